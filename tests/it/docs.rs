//! `docs/interface.md` is the contract; these checks keep its tables equal
//! to the code's: every error code with its status, every variable, and
//! every value of a log line's `level`, `outcome` and `event`.

use std::collections::BTreeMap;

use agent_edge::config::VARIABLES;
use agent_edge::error::Code;

fn interface() -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/docs/interface.md");
    std::fs::read_to_string(path).expect("docs/interface.md")
}

/// The rows of the table under `## <section>` whose header's first cell is
/// `first_column`: each row's cells, backticks removed.
fn table(text: &str, section: &str, first_column: &str) -> Vec<Vec<String>> {
    let heading = format!("## {section}");
    let body = text
        .split("\n## ")
        .find(|part| format!("## {part}").starts_with(&heading))
        .unwrap_or_else(|| panic!("no section {heading:?}"));
    let mut rows = Vec::new();
    let mut in_table = false;
    for line in body.lines() {
        let Some(inner) = line.trim().strip_prefix('|') else {
            in_table = false;
            continue;
        };
        let cells: Vec<String> = inner
            .trim_end_matches('|')
            .split('|')
            .map(|cell| cell.trim().replace('`', ""))
            .collect();
        if cells[0] == first_column {
            in_table = true;
        } else if in_table && !cells[0].starts_with("---") {
            rows.push(cells);
        }
    }
    assert!(
        !rows.is_empty(),
        "no table {first_column:?} under {heading:?}"
    );
    rows
}

#[test]
fn every_error_code_is_documented_with_its_status() {
    let documented: BTreeMap<String, String> = table(&interface(), "Errors", "code")
        .into_iter()
        .map(|row| (row[0].clone(), row[1].clone()))
        .collect();
    let code: BTreeMap<String, String> = Code::ALL
        .iter()
        .map(|code| {
            let status = code
                .status()
                .map_or("in stream".to_owned(), |s| s.as_u16().to_string());
            (code.as_str().to_owned(), status)
        })
        .collect();
    assert_eq!(documented, code, "docs/interface.md's error table");
}

#[test]
fn every_variable_is_documented_with_its_default_range_and_readers() {
    let rows = table(&interface(), "Configuration", "variable");
    let documented: Vec<&str> = rows.iter().map(|row| row[0].as_str()).collect();
    let names: Vec<&str> = VARIABLES.iter().map(|v| v.name).collect();
    assert_eq!(
        documented, names,
        "docs/interface.md's variable table, in order"
    );
    for (row, variable) in rows.iter().zip(VARIABLES) {
        let cells = (
            row[2].as_str(),
            row[3].as_str(),
            row[4].as_str(),
            row[1].contains("(a secret"),
        );
        let expected = (
            variable.documented_default().replace('`', ""),
            variable.documented_range().replace('`', ""),
            variable.readers.as_str(),
            variable.secret,
        );
        assert_eq!(
            cells,
            (
                expected.0.as_str(),
                expected.1.as_str(),
                expected.2,
                expected.3
            ),
            "docs/interface.md's row of {} (default, range, read by, secret)",
            variable.name
        );
    }
}

#[test]
fn the_route_table_is_the_code_s() {
    use agent_edge::gateway::routes::ROUTES;
    let rows = table(&interface(), "Routes", "route");
    let mut documented = Vec::new();
    let mut without_ui = Vec::new();
    for row in &rows {
        for route in row[0].split(", ").filter(|r| r.contains(" /")) {
            documented.push(route.to_owned());
            if row[1].contains("not served with UI=off") {
                without_ui.push(route.to_owned());
            }
        }
    }
    let mut routes: Vec<String> = ROUTES
        .iter()
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    let mut needing_ui: Vec<String> = ROUTES
        .iter()
        .filter(|r| r.needs_ui)
        .map(|r| format!("{} {}", r.method, r.path))
        .collect();
    for list in [
        &mut documented,
        &mut routes,
        &mut without_ui,
        &mut needing_ui,
    ] {
        list.sort();
    }
    assert_eq!(documented, routes, "docs/interface.md's route table");
    assert_eq!(
        without_ui, needing_ui,
        "the routes the docs say UI=off removes"
    );
}

#[test]
fn every_log_value_is_documented() {
    use agent_edge::gateway::{EventName, Level, Outcome};
    let text = interface();
    let section = text
        .split("\n## ")
        .find(|part| part.starts_with("Log lines"))
        .expect("a Log lines section");
    let values = Level::ALL
        .iter()
        .map(|v| v.as_str())
        .chain(Outcome::ALL.iter().map(|v| v.as_str()))
        .chain(EventName::ALL.iter().map(|v| v.as_str()));
    for value in values {
        assert!(
            section.contains(&format!("`{value}`")),
            "docs/interface.md's log lines do not name `{value}`"
        );
    }
}
