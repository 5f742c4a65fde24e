//! `run`'s constrained-output options: the answer must be JSON (any object or a schema's
//! instance), match a Lark grammar or a regular expression.

use pocketlm_core::constraint::Constraint;
use pocketlm_core::Error;
use std::path::{Path, PathBuf};

#[derive(clap::Args)]
#[group(multiple = false)]
pub struct ConstraintArgs {
    /// The answer is a JSON object
    #[arg(long)]
    json: bool,
    /// The answer is an instance of the JSON Schema in this file
    #[arg(long = "json-schema", value_name = "FILE")]
    json_schema: Option<PathBuf>,
    /// The answer matches the grammar in this file (llguidance's Lark dialect: `start: ...`)
    #[arg(long, value_name = "FILE")]
    grammar: Option<PathBuf>,
    /// The answer matches this regular expression (Rust regex syntax), as a whole
    #[arg(long, value_name = "REGEX")]
    regex: Option<String>,
}

impl ConstraintArgs {
    pub fn constraint(&self) -> pocketlm_core::Result<Option<Constraint>> {
        Ok(if self.json {
            Some(Constraint::JsonObject)
        } else if let Some(path) = &self.json_schema {
            Some(Constraint::json_schema(&read(path)?).map_err(|e| named(path, e))?)
        } else if let Some(path) = &self.grammar {
            Some(Constraint::Lark(read(path)?))
        } else {
            self.regex.clone().map(Constraint::Regex)
        })
    }
}

fn read(path: &Path) -> pocketlm_core::Result<String> {
    std::fs::read_to_string(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })
}

/// The file's name in front of what is wrong with its content.
fn named(path: &Path, e: Error) -> Error {
    match e {
        Error::Constraint(why) => Error::Constraint(format!("{}: {why}", path.display())),
        other => other,
    }
}
