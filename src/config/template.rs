//! The commented config template (`config --commented`).
//!
//! It is generated from the same typed config and doc comments that parse
//! the file, with every key at its default, so it always parses back to the
//! defaults and never documents a key that does not exist.

use schemars::JsonSchema;
use serde_json::{Map, Value};

use super::validate::resolve;
use super::{Config, Format};

/// Render the full default config, with each key's documentation as a
/// comment above it. JSON has no comments, so it gets the plain defaults.
pub fn commented_template(format: Format) -> Result<String, String> {
    let config = Config::default();
    let values = serde_json::to_value(&config).map_err(|e| e.to_string())?;
    let Value::Object(values) = values else {
        return Err("config did not serialize to a map".into());
    };
    let schema = schema_value::<Config>();
    let mut out = String::from(
        "# herakles-node-exporter configuration.\n\
         # Every key is shown at its default; delete what you do not change.\n\
         # Precedence: defaults < this file < HERAKLES_* variables < flags.\n",
    );
    match format {
        Format::Json => return format.to_string(&values),
        Format::Yaml => yaml_section(&mut out, &values, &schema, &schema, 0)?,
        Format::Toml => toml_document(&mut out, &values, &schema)?,
    }
    Ok(out)
}

fn schema_value<T: JsonSchema>() -> Value {
    schemars::schema_for!(T).to_value()
}

/// Field docs of a section: key → description, with the key's range.
fn descriptions(schema: &Value, root: &Value) -> Map<String, Value> {
    let mut out = Map::new();
    let Some(props) = resolve(schema, root)
        .get("properties")
        .and_then(Value::as_object)
    else {
        return out;
    };
    for (k, v) in props {
        let desc = v
            .get("description")
            .or_else(|| resolve(v, root).get("description"))
            .and_then(Value::as_str);
        let range = match (v.get("minimum"), v.get("maximum")) {
            (Some(min), Some(max)) => Some(format!("Range: {min} to {max}.")),
            _ => None,
        };
        let desc = match (desc, range) {
            (Some(d), Some(r)) => Value::String(format!("{d}\n{r}")),
            (Some(d), None) => Value::String(d.to_string()),
            (None, Some(r)) => Value::String(r),
            (None, None) => Value::Null,
        };
        out.insert(k.clone(), desc);
    }
    out
}

fn property<'a>(schema: &'a Value, root: &'a Value, key: &str) -> &'a Value {
    &resolve(schema, root)["properties"][key]
}

fn comment(out: &mut String, indent: usize, text: &str) {
    for line in text.lines() {
        out.push_str(&" ".repeat(indent));
        out.push_str("# ");
        out.push_str(line);
        out.push('\n');
    }
}

fn yaml_section(
    out: &mut String,
    values: &Map<String, Value>,
    schema: &Value,
    root: &Value,
    indent: usize,
) -> Result<(), String> {
    let docs = descriptions(schema, root);
    let pad = " ".repeat(indent);
    for (key, value) in values {
        if let Some(d) = docs.get(key).and_then(Value::as_str) {
            comment(out, indent, d);
        }
        if key == "collectors" && indent == 0 {
            out.push_str("collectors:\n");
            collectors_yaml(out, value)?;
            continue;
        }
        match value {
            Value::Object(m) if !m.is_empty() => {
                out.push_str(&format!("{pad}{key}:\n"));
                yaml_section(out, m, property(schema, root, key), root, indent + 2)?;
            }
            v => yaml_value(out, &pad, key, v)?,
        }
    }
    Ok(())
}

fn yaml_value(out: &mut String, pad: &str, key: &str, v: &Value) -> Result<(), String> {
    let rendered = serde_norway::to_string(v).map_err(|e| e.to_string())?;
    let rendered = rendered.trim_end();
    if rendered.contains('\n') {
        out.push_str(&format!("{pad}{key}:\n"));
        for line in rendered.lines() {
            out.push_str(&format!("{pad}  {line}\n"));
        }
    } else {
        out.push_str(&format!("{pad}{key}: {rendered}\n"));
    }
    Ok(())
}

fn collectors_yaml(out: &mut String, sections: &Value) -> Result<(), String> {
    for reg in herakles_core::registrations() {
        let Some(Value::Object(section)) = sections.get(reg.name) else {
            continue;
        };
        out.push_str(&format!("  # {}\n  {}:\n", reg.description, reg.name));
        comment(out, 4, "Whether this collector runs.");
        yaml_value(out, "    ", "enabled", &section["enabled"])?;
        let schema = reg.config_schema().to_value();
        let docs = descriptions(&schema, &schema);
        for (key, value) in section.iter().filter(|(k, _)| *k != "enabled") {
            if let Some(d) = docs.get(key).and_then(Value::as_str) {
                comment(out, 4, d);
            }
            yaml_value(out, "    ", key, value)?;
        }
    }
    Ok(())
}

fn toml_document(
    out: &mut String,
    values: &Map<String, Value>,
    root: &Value,
) -> Result<(), String> {
    let docs = descriptions(root, root);
    // TOML wants plain keys before any [table].
    for (key, value) in values.iter().filter(|(_, v)| !v.is_object()) {
        if let Some(d) = docs.get(key).and_then(Value::as_str) {
            comment(out, 0, d);
        }
        toml_value(out, key, value)?;
    }
    for (key, value) in values
        .iter()
        .filter(|(k, v)| v.is_object() && *k != "collectors")
    {
        out.push('\n');
        if let Some(d) = docs.get(key).and_then(Value::as_str) {
            comment(out, 0, d);
        }
        out.push_str(&format!("[{key}]\n"));
        let sub = descriptions(property(root, root, key), root);
        for (k, v) in value.as_object().into_iter().flatten() {
            if let Some(d) = sub.get(k).and_then(Value::as_str) {
                comment(out, 0, d);
            }
            toml_value(out, k, v)?;
        }
    }
    for reg in herakles_core::registrations() {
        let Some(Value::Object(section)) = values.get("collectors").and_then(|c| c.get(reg.name))
        else {
            continue;
        };
        out.push_str(&format!(
            "\n# {}\n[collectors.{}]\n",
            reg.description, reg.name
        ));
        comment(out, 0, "Whether this collector runs.");
        toml_value(out, "enabled", &section["enabled"])?;
        let schema = reg.config_schema().to_value();
        let sub = descriptions(&schema, &schema);
        for (k, v) in section.iter().filter(|(k, _)| *k != "enabled") {
            if let Some(d) = sub.get(k).and_then(Value::as_str) {
                comment(out, 0, d);
            }
            toml_value(out, k, v)?;
        }
    }
    Ok(())
}

fn toml_value(out: &mut String, key: &str, v: &Value) -> Result<(), String> {
    let tv = toml::Value::try_from(v).map_err(|e| format!("{key}: {e}"))?;
    out.push_str(&format!("{key} = {tv}\n"));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::parse_str;

    fn assert_defaults(c: &Config) {
        let d = Config::default();
        assert_eq!(
            serde_json::to_value(c).unwrap(),
            serde_json::to_value(&d).unwrap()
        );
    }

    #[test]
    fn yaml_template_parses_back_to_defaults() {
        let t = commented_template(Format::Yaml).unwrap();
        assert!(t.contains("# TCP port of the HTTP server"), "{t}");
        assert!(
            t.contains("  memory:\n    # Whether this collector runs.\n    enabled: true\n"),
            "{t}"
        );
        assert_defaults(&parse_str(&t, Format::Yaml, None).unwrap());
    }

    #[test]
    fn toml_and_json_templates_parse_back_to_defaults() {
        let t = commented_template(Format::Toml).unwrap();
        assert!(t.contains("[collectors.memory]"), "{t}");
        assert_defaults(&parse_str(&t, Format::Toml, None).unwrap());
        let j = commented_template(Format::Json).unwrap();
        assert_defaults(&parse_str(&j, Format::Json, None).unwrap());
    }
}
