//! `agent-edge-lambda`: the gateway as an AWS Lambda function (function URL
//! with `InvokeMode: RESPONSE_STREAM`), configured from the function's
//! environment with the variables of the native server (see README,
//! "AWS Lambda").

#[tokio::main]
async fn main() -> Result<(), lambda_runtime::Error> {
    agent_edge::platform::lambda::run().await
}
