//! Reads the SAM template as CloudFormation sees it, for the deployment checks in `tests/`.
//!
//! Short-form tags become their long forms (`!Ref X` is `{"Ref": "X"}`, `!GetAtt A.B` is
//! `{"Fn::GetAtt": ["A", "B"]}`, `!Sub s` is `{"Fn::Sub": s}`), so the tests walk plain JSON.

use std::path::{Path, PathBuf};

use serde_json::{json, Map, Value};

/// The repository's root.
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// `template.yaml`, parsed.
pub fn template() -> Value {
    let text = std::fs::read_to_string(root().join("template.yaml")).expect("template.yaml");
    parse(&text)
}

/// Parses a CloudFormation YAML template into long-form JSON.
pub fn parse(text: &str) -> Value {
    let yaml: yaml_serde::Value = yaml_serde::from_str(text).expect("the template is valid YAML");
    to_json(yaml)
}

fn to_json(value: yaml_serde::Value) -> Value {
    use yaml_serde::Value as Y;
    match value {
        Y::Null => Value::Null,
        Y::Bool(b) => Value::Bool(b),
        Y::Number(n) => serde_json::to_value(&n).expect("a YAML number is a JSON number"),
        Y::String(s) => Value::String(s),
        Y::Sequence(items) => Value::Array(items.into_iter().map(to_json).collect()),
        Y::Mapping(mapping) => {
            let mut object = Map::new();
            for (key, value) in mapping {
                let key = match key {
                    Y::String(s) => s,
                    other => serde_json::to_string(&to_json(other)).expect("key"),
                };
                object.insert(key, to_json(value));
            }
            Value::Object(object)
        }
        Y::Tagged(tagged) => {
            let tag = tagged.tag.to_string();
            let name = tag.trim_start_matches('!');
            let inner = to_json(tagged.value);
            match name {
                "Ref" => json!({ "Ref": inner }),
                "Condition" => json!({ "Condition": inner }),
                "GetAtt" => match inner {
                    Value::String(s) => {
                        let (resource, attribute) =
                            s.split_once('.').expect("!GetAtt Resource.Attribute");
                        json!({ "Fn::GetAtt": [resource, attribute] })
                    }
                    other => json!({ "Fn::GetAtt": other }),
                },
                other => json!({ format!("Fn::{other}"): inner }),
            }
        }
    }
}

/// The template's resources by logical id.
pub fn resources(template: &Value) -> &Map<String, Value> {
    template["Resources"]
        .as_object()
        .expect("the template has Resources")
}

/// The logical ids of resources of one type.
pub fn of_type<'a>(template: &'a Value, kind: &str) -> Vec<(&'a String, &'a Value)> {
    resources(template)
        .iter()
        .filter(|(_, r)| r["Type"] == kind)
        .collect()
}

/// Every resource a value refers to with `Ref`, `Fn::GetAtt` or `${Name}` in `Fn::Sub`.
pub fn references(value: &Value) -> Vec<String> {
    references_unless(value, &|_| false)
}

/// The references a value keeps when the conditions `is_false` names are false: the first
/// branch of an `Fn::If` on such a condition is left out (CloudFormation never resolves it).
pub fn references_unless(value: &Value, is_false: &dyn Fn(&str) -> bool) -> Vec<String> {
    let mut found = Vec::new();
    collect_references(value, is_false, &mut found);
    found
}

fn collect_references(value: &Value, is_false: &dyn Fn(&str) -> bool, found: &mut Vec<String>) {
    match value {
        Value::Object(object) => {
            for (key, inner) in object {
                match (key.as_str(), inner) {
                    ("Fn::If", Value::Array(parts))
                        if parts.len() == 3 && parts[0].as_str().is_some_and(is_false) =>
                    {
                        collect_references(&parts[2], is_false, found);
                    }
                    ("Ref", Value::String(name)) => found.push(name.clone()),
                    ("Fn::GetAtt", Value::Array(parts)) => {
                        if let Some(Value::String(name)) = parts.first() {
                            found.push(name.clone());
                        }
                    }
                    ("Fn::Sub", sub) => {
                        let text = match sub {
                            Value::String(s) => s.as_str(),
                            Value::Array(parts) => parts[0].as_str().unwrap_or(""),
                            _ => "",
                        };
                        for piece in text.split("${").skip(1) {
                            if let Some((name, _)) = piece.split_once('}') {
                                if !name.starts_with('!') {
                                    found.push(name.split('.').next().unwrap().to_string());
                                }
                            }
                        }
                        if let Value::Array(parts) = sub {
                            for part in &parts[1..] {
                                collect_references(part, is_false, found);
                            }
                        }
                    }
                    _ => collect_references(inner, is_false, found),
                }
            }
        }
        Value::Array(items) => items
            .iter()
            .for_each(|i| collect_references(i, is_false, found)),
        _ => {}
    }
}

/// A value that is one or several strings, as IAM's Action and Resource are.
pub fn one_or_many(value: &Value) -> Vec<&Value> {
    match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    }
}

/// The path to the pinned SAM CLI that `scripts/install-tools` installs.
pub fn sam_cli() -> PathBuf {
    std::env::var_os("SAM_CLI")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".tools/sam/bin/sam"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_form_tags_become_long_form() {
        let value = parse(
            "a: !Ref Stream\nb: !GetAtt Queue.Arn\nc: !Sub \"${Bucket.Arn}/x/${AWS::Region}\"\n\
             d: !If [Cond, !Ref X, !Ref AWS::NoValue]\ne: !Condition Functions\n",
        );
        assert_eq!(value["a"], json!({"Ref": "Stream"}));
        assert_eq!(value["b"], json!({"Fn::GetAtt": ["Queue", "Arn"]}));
        assert_eq!(
            value["c"],
            json!({"Fn::Sub": "${Bucket.Arn}/x/${AWS::Region}"})
        );
        assert_eq!(
            value["d"],
            json!({"Fn::If": ["Cond", {"Ref": "X"}, {"Ref": "AWS::NoValue"}]})
        );
        assert_eq!(value["e"], json!({"Condition": "Functions"}));
    }

    #[test]
    fn references_are_found_in_refs_getatts_and_subs() {
        let value = parse(
            "x: [!Ref A, !GetAtt B.Arn, !Sub \"${C}/${D.Arn}/${AWS::Region}/${!Literal}\"]\n",
        );
        assert_eq!(references(&value), ["A", "B", "C", "D", "AWS::Region"]);
    }

    #[test]
    fn the_first_branch_of_an_if_on_a_false_condition_refers_to_nothing() {
        let value = parse("x: !If [Off, !Ref A, !Ref B]\ny: !If [On, !Ref C, !Ref D]\n");
        assert_eq!(references(&value), ["A", "B", "C", "D"]);
        assert_eq!(references_unless(&value, &|c| c == "Off"), ["B", "C", "D"]);
    }
}
