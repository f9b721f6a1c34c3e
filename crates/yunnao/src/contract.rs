//! The API description made to say what the server does, not only what each handler declares:
//! the answers the edge gives on every route (a bad request, a missing credential, a refused
//! one, bodies and heads too large, the server too busy), each as problem+json with the
//! `Problem` schema; and public routes marked as needing no credential.
//!
//! It runs once on the assembled document. Handlers keep declaring their own outcomes; what is
//! added here never replaces a response a handler documented.

use serde_json::{Map, Value, json};

/// Statuses any operation may answer at the edge, with their meaning.
const EDGE_RESPONSES: &[(&str, &str)] = &[
    (
        "400",
        "Bad request: a malformed query, path parameter, header or body",
    ),
    (
        "401",
        "The credential sent is not valid (public operations need none)",
    ),
    ("413", "Request body too large"),
    ("414", "Request target too long"),
    ("431", "Request headers too large"),
    (
        "503",
        "The server is handling as many requests as it accepts; retry after `Retry-After` seconds",
    ),
];

/// Statuses of an operation that needs a credential.
const SECURED_RESPONSES: &[(&str, &str)] = &[("403", "The credential does not allow this")];

/// Statuses of an operation that takes a body.
const BODY_RESPONSES: &[(&str, &str)] = &[
    ("404", "A resource the body names does not exist"),
    ("411", "A body must come with Content-Length"),
    ("415", "The body's media type is not accepted"),
    ("422", "The body failed validation"),
];

/// Statuses of an operation that changes something.
const WRITE_RESPONSES: &[(&str, &str)] = &[("409", "Conflicts with the current state")];

/// Statuses of an operation that names a resource in its path.
const PATH_RESPONSES: &[(&str, &str)] = &[("404", "There is no such resource")];

fn problem_schema() -> Value {
    json!({
        "type": "object",
        "required": ["type", "title", "status"],
        "properties": {
            "type": {"type": "string"},
            "title": {"type": "string"},
            "status": {"type": "integer"},
            "detail": {"type": "string"},
            "instance": {"type": "string"},
        },
        "additionalProperties": true,
    })
}

/// What an error answer of an operation under `path` may carry: problem+json everywhere;
/// Open311 also answers in its own error formats (JSON list or XML), the web UI with pages.
fn error_content(path: &str) -> Value {
    let mut content = json!({
        "application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}},
    });
    if path.starts_with("/open311/") {
        content["application/json"] = json!({"schema": {"type": "array", "items": {
            "type": "object", "required": ["code", "description"],
            "properties": {"code": {"type": "integer"}, "description": {"type": "string"}}}}});
        content["text/xml"] = json!({"schema": {"type": "string"}});
    }
    if path == "/" || path.starts_with("/ui/") {
        content["text/html"] = json!({"schema": {"type": "string"}});
    }
    content
}

fn problem_response(description: &str, path: &str) -> Value {
    json!({"description": description, "content": error_content(path)})
}

/// Completes `document` (an OpenAPI 3.1 document as JSON) in place.
pub fn complete(document: &mut Value) {
    let global_security = document.get("security").cloned();
    if let Some(schemas) = document
        .pointer_mut("/components/schemas")
        .and_then(Value::as_object_mut)
    {
        schemas.insert("Problem".into(), problem_schema());
    }
    let Some(paths) = document.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        let Some(item) = item.as_object_mut() else {
            continue;
        };
        let path_parameters = path.contains('{');
        for (method, operation) in item.iter_mut() {
            if !matches!(
                method.as_str(),
                "get" | "put" | "post" | "delete" | "patch" | "head" | "options"
            ) {
                continue;
            }
            let Some(operation) = operation.as_object_mut() else {
                continue;
            };
            let security = operation
                .get("security")
                .cloned()
                .or_else(|| global_security.clone());
            // `security: [{}]` (utoipa's `security(())`) is public: no credential needed.
            let secured = security
                .as_ref()
                .and_then(Value::as_array)
                .is_some_and(|list| {
                    !list.is_empty()
                        && !list
                            .iter()
                            .any(|r| r.as_object().is_some_and(Map::is_empty))
                });
            let takes_body = operation.contains_key("requestBody");
            let responses = operation.entry("responses").or_insert_with(|| json!({}));
            let Some(responses) = responses.as_object_mut() else {
                continue;
            };
            let path = path.as_str();
            let method = method.clone();
            let mut add = |list: &[(&str, &str)]| {
                for (status, description) in list {
                    match responses.get_mut(*status) {
                        None => {
                            responses.insert((*status).into(), problem_response(description, path));
                        }
                        // A handler named the status without saying what comes: the body is
                        // a problem.
                        Some(Value::Object(declared)) if !declared.contains_key("content") => {
                            let said = declared.get("description").and_then(Value::as_str);
                            if said.is_none_or(str::is_empty) {
                                declared.insert("description".into(), json!(description));
                            }
                            declared.insert("content".into(), error_content(path));
                        }
                        Some(_) => {}
                    }
                }
            };
            add(EDGE_RESPONSES);
            if secured {
                add(SECURED_RESPONSES);
            }
            if takes_body {
                add(BODY_RESPONSES);
            }
            if matches!(method.as_str(), "post" | "put" | "patch" | "delete") {
                add(WRITE_RESPONSES);
            }
            if path_parameters {
                add(PATH_RESPONSES);
            }
            // Any other error a handler names without saying what comes is a problem too.
            for (status, declared) in responses.iter_mut() {
                if status.starts_with(['4', '5'])
                    && let Some(declared) = declared.as_object_mut()
                    && !declared.contains_key("content")
                {
                    declared.insert("content".into(), error_content(path));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edge_answers_are_added_without_replacing_declared_ones() {
        let mut document = json!({
            "security": [{"bearer": []}],
            "components": {"schemas": {}},
            "paths": {
                "/a/{id}": {"post": {"requestBody": {}, "responses": {
                    "200": {"description": "ok"},
                    "404": {"description": "gone", "content": {"text/plain": {}}},
                    "400": {"description": ""},
                }}},
                "/health": {"get": {"security": [{}], "responses": {"200": {"description": "ok"}}}},
            }
        });
        complete(&mut document);
        let post = &document["paths"]["/a/{id}"]["post"]["responses"];
        for status in [
            "400", "401", "403", "411", "413", "414", "415", "422", "431", "503",
        ] {
            assert!(
                post[status]["content"]["application/problem+json"].is_object(),
                "{status}"
            );
        }
        assert_eq!(
            post["404"]["description"], "gone",
            "declared responses stay"
        );
        assert!(
            post["400"]["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty())
        );
        let health = &document["paths"]["/health"]["get"]["responses"];
        assert!(
            health["403"].is_null(),
            "public operations need no credential"
        );
        assert!(health["503"].is_object());
        assert!(document["components"]["schemas"]["Problem"].is_object());
    }
}
