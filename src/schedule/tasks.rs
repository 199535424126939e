//! What each schedulable task runs: one top-level statement (pg_cron runs a procedure that
//! COMMITs only as a lone CALL), built from the task's name and its jsonb arguments. Pure logic:
//! the catalog checks (does the parent exist, may the caller touch it) happen in `jobs.rs`.

use crate::ident::literal;
use serde_json::{Map, Value};

/// The tasks `dbopt.schedule()` knows, each with its statement and the arguments it accepts
/// (name, SQL type the value is cast to).
struct Task {
    name: &'static str,
    call: &'static str,
    arguments: &'static [(&'static str, &'static str)],
}

const TASKS: &[Task] = &[
    Task {
        name: "maintenance",
        call: "CALL dbopt.run_maintenance",
        arguments: &[("parent", "regclass"), ("lock_retries", "integer")],
    },
    Task {
        name: "archive",
        call: "CALL dbopt.run_archive_policies",
        arguments: &[("source", "regclass")],
    },
    Task {
        name: "refresh_rolling",
        call: "CALL dbopt.refresh_rolling",
        arguments: &[("name", "text")],
    },
    Task {
        name: "refresh_matviews",
        call: "CALL dbopt.refresh_matviews",
        arguments: &[("force", "boolean")],
    },
    Task {
        name: "snapshot_stats",
        call: "SELECT dbopt.snapshot_stats",
        arguments: &[("keep", "interval")],
    },
];

/// The names of the tasks, for error hints.
pub fn task_names() -> String {
    TASKS.iter().map(|t| t.name).collect::<Vec<_>>().join(", ")
}

/// The statement that runs `task` with `args` (a JSON object of named arguments, values as
/// strings, numbers or booleans), or why it cannot be built.
pub fn command(task: &str, args: &Value) -> Result<String, String> {
    let task = TASKS
        .iter()
        .find(|t| t.name == task)
        .ok_or_else(|| format!("unknown task \"{task}\""))?;
    let empty = Map::new();
    let given = match args {
        Value::Object(map) => map,
        Value::Null => &empty,
        other => return Err(format!("args must be a JSON object, not {other}")),
    };
    let mut named = Vec::new();
    for (key, value) in given {
        let (name, sql_type) = task
            .arguments
            .iter()
            .find(|(name, _)| name == key)
            .ok_or_else(|| {
                let accepted: Vec<&str> = task.arguments.iter().map(|(n, _)| *n).collect();
                format!(
                    "task \"{}\" takes no argument \"{key}\" (it takes: {})",
                    task.name,
                    accepted.join(", ")
                )
            })?;
        let text = match value {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            other => {
                return Err(format!(
                    "argument \"{key}\" of task \"{}\" must be a string, number or boolean, not {other}",
                    task.name
                ))
            }
        };
        named.push(format!("{name} => {}::{sql_type}", literal(&text)));
    }
    Ok(format!("{}({})", task.call, named.join(", ")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn each_task_is_one_statement_with_its_arguments_as_typed_literals() {
        assert_eq!(
            command("maintenance", &json!({})).unwrap(),
            "CALL dbopt.run_maintenance()"
        );
        assert_eq!(
            command("maintenance", &json!({"parent": "app.\"Events\"", "lock_retries": 2})).unwrap(),
            "CALL dbopt.run_maintenance(lock_retries => '2'::integer, parent => 'app.\"Events\"'::regclass)"
        );
        assert_eq!(
            command("refresh_matviews", &json!({"force": true})).unwrap(),
            "CALL dbopt.refresh_matviews(force => 'true'::boolean)"
        );
        assert_eq!(
            command("snapshot_stats", &Value::Null).unwrap(),
            "SELECT dbopt.snapshot_stats()"
        );
        // A value cannot escape its literal.
        assert_eq!(
            command("refresh_rolling", &json!({"name": "x'); DROP TABLE t; --"})).unwrap(),
            "CALL dbopt.refresh_rolling(name => 'x''); DROP TABLE t; --'::text)"
        );
    }

    #[test]
    fn unknown_tasks_arguments_and_values_are_named() {
        assert_eq!(
            command("vacuum", &json!({})).unwrap_err(),
            "unknown task \"vacuum\""
        );
        assert_eq!(
            command("maintenance", &json!({"table": "t"})).unwrap_err(),
            "task \"maintenance\" takes no argument \"table\" (it takes: parent, lock_retries)"
        );
        assert_eq!(
            command("refresh_rolling", &json!({"name": ["a"]})).unwrap_err(),
            "argument \"name\" of task \"refresh_rolling\" must be a string, number or boolean, not [\"a\"]"
        );
        assert_eq!(
            command("maintenance", &json!([1])).unwrap_err(),
            "args must be a JSON object, not [1]"
        );
        assert_eq!(
            task_names(),
            "maintenance, archive, refresh_rolling, refresh_matviews, snapshot_stats"
        );
    }
}
