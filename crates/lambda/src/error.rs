//! The JSON error body every endpoint answers with.

use serde::Serialize;
use serde_json::Value;

use sentinel_domain::validation::FieldErrors;

/// `{"error": {"code": "...", "message": "...", "fields": {...}}}`
#[derive(Debug, Serialize, PartialEq)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, PartialEq)]
pub struct ErrorDetail {
    pub code: &'static str,
    pub message: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fields: Option<FieldErrors>,
    /// Extra, error-specific members (e.g. the ids a 503 did not accept).
    #[serde(flatten, skip_serializing_if = "serde_json::Map::is_empty")]
    pub extra: serde_json::Map<String, Value>,
}

impl ErrorBody {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code,
                message: message.into(),
                fields: None,
                extra: serde_json::Map::new(),
            },
        }
    }

    pub fn with_fields(mut self, fields: FieldErrors) -> Self {
        self.error.fields = Some(fields);
        self
    }

    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.error.extra.insert(key.to_string(), value);
        self
    }

    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("error bodies always serialize")
    }
}
