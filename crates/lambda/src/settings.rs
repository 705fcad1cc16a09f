//! Reading a function's settings from the environment, failing fast with a clear message.

/// A required setting: `"{name} must be set"` when it is absent or blank.
pub fn required(name: &str) -> anyhow::Result<String> {
    optional(name).ok_or_else(|| anyhow::anyhow!("{name} must be set"))
}

/// An optional setting; blank counts as unset.
pub fn optional(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// An optional setting parsed with `parse`, whose error names the setting.
pub fn parsed<T>(
    name: &str,
    parse: impl FnOnce(&str) -> Result<T, String>,
) -> anyhow::Result<Option<T>> {
    optional(name)
        .map(|text| parse(text.trim()).map_err(|why| anyhow::anyhow!("{name} {why}, not {text:?}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_parse_error_names_the_setting_and_the_value() {
        // A name no other test or process sets.
        let name = "SENTINEL_SETTINGS_TEST_PARSED";
        // SAFETY: this test alone reads or writes this variable.
        unsafe { std::env::set_var(name, " twelve ") };
        let error = parsed(name, |t| {
            t.parse::<u32>().map_err(|_| "must be a number".into())
        })
        .unwrap_err();
        assert_eq!(
            error.to_string(),
            format!("{name} must be a number, not \" twelve \"")
        );
        unsafe { std::env::remove_var(name) };
        assert!(
            parsed(name, |t| t.parse::<u32>().map_err(|e| e.to_string()))
                .unwrap()
                .is_none()
        );
        assert_eq!(
            required(name).unwrap_err().to_string(),
            format!("{name} must be set")
        );
    }
}
