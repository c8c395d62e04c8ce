//! The Lambda deployment template, `deploy/lambda/template.yaml` (README,
//! "AWS Lambda"): valid for CloudFormation as cfn-lint sees it, and
//! creating what the README promises: the function running the
//! `agent-edge-lambda` zip, a role that may only invoke the runtime, and a
//! function URL that streams.

use std::process::Command;

use serde_json::Value;

const TEMPLATE: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/lambda/template.yaml");

/// The template as cfn-lint's decoder reads it (intrinsic functions such as
/// `!Ref X` become `{"Ref": "X"}`), as JSON.
fn template() -> Value {
    let decode = "import json, sys\n\
                  from cfnlint.decode import decode\n\
                  template, errors = decode(sys.argv[1])\n\
                  if errors: sys.exit('\\n'.join(str(e) for e in errors))\n\
                  print(json.dumps(template))";
    crate::pyenv::run_json(&["-c", decode, TEMPLATE], b"")
        .unwrap_or_else(|why| panic!("the template does not parse: {why}"))
}

#[test]
fn the_template_passes_cfn_lint() {
    let cfn_lint = crate::pyenv::python().with_file_name("cfn-lint");
    let output = Command::new(cfn_lint)
        .arg(TEMPLATE)
        .output()
        .expect("running cfn-lint");
    assert!(
        output.status.success(),
        "cfn-lint: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
}

#[test]
fn the_template_creates_a_streaming_url_a_function_and_a_narrow_role() {
    let template = template();
    let resources = &template["Resources"];
    let of_type = |kind: &str| -> Vec<&Value> {
        resources
            .as_object()
            .expect("Resources")
            .values()
            .filter(|r| r["Type"] == kind)
            .collect()
    };

    let urls = of_type("AWS::Lambda::Url");
    assert_eq!(urls.len(), 1, "one function URL");
    assert_eq!(urls[0]["Properties"]["InvokeMode"], "RESPONSE_STREAM");

    let functions = of_type("AWS::Lambda::Function");
    assert_eq!(functions.len(), 1, "one function");
    let function = &functions[0]["Properties"];
    assert_eq!(function["Runtime"], "provided.al2023");
    assert_eq!(
        function["Handler"], "bootstrap",
        "cargo lambda's zip holds `bootstrap`"
    );
    let variables = function["Environment"]["Variables"]
        .as_object()
        .expect("environment variables");
    for name in variables.keys() {
        assert!(
            agent_edge::config::variable(name).is_some(),
            "{name} is not a variable the gateway reads"
        );
        // Lambda sets these itself (and refuses a template that sets them).
        assert!(
            !name.starts_with("AWS_"),
            "{name} is reserved by Lambda: the role's credentials and region come from it"
        );
    }
    assert_eq!(
        variables["AUTH"],
        serde_json::json!({"Fn::If": ["PublicUrl", "jwt", "none"]}),
        "the function checks the JWT when its URL is public"
    );
    assert_eq!(
        template["Conditions"]["PublicUrl"],
        serde_json::json!({"Fn::Equals": [{"Ref": "FunctionUrlAuthType"}, "NONE"]})
    );

    let roles = of_type("AWS::IAM::Role");
    assert_eq!(roles.len(), 1, "one role");
    let policies = roles[0]["Properties"]["Policies"]
        .as_array()
        .expect("inline policies");
    let actions: Vec<&Value> = policies
        .iter()
        .flat_map(|p| {
            p["PolicyDocument"]["Statement"]
                .as_array()
                .into_iter()
                .flatten()
        })
        .map(|statement| &statement["Action"])
        .collect();
    assert_eq!(
        actions,
        [&serde_json::json!([
            "bedrock-agentcore:InvokeAgentRuntime",
            "bedrock-agentcore:StopRuntimeSession"
        ])],
        "the role may invoke the runtime and end its sessions, nothing else"
    );
}
