//! Variable names as users write them (`max-connections`, `Max_Connections`) brought to the
//! server's form (`max_connections`).

use std::collections::BTreeMap;

use crate::error::ConfigError;

/// The server's name for a variable: surrounding space removed, ASCII lowercase, `-` as `_`.
///
/// The result must be 1 to 64 lowercase letters, digits and `_`. The `loose-` prefix of option
/// files is refused: it tells the server to ignore an option it does not know, and switchyard
/// checks every option against the servers instead.
///
/// ```
/// assert_eq!(switchyard_config::normalize_name(" Max-Connections ").unwrap(), "max_connections");
/// assert!(switchyard_config::normalize_name("loose-foo").is_err());
/// assert!(switchyard_config::normalize_name("a;b").is_err());
/// ```
///
/// # Errors
/// [`ConfigError::InvalidName`] naming the input and what is accepted.
pub fn normalize_name(raw: &str) -> Result<String, ConfigError> {
    let name: String = raw
        .trim()
        .chars()
        .map(|c| {
            if c == '-' {
                '_'
            } else {
                c.to_ascii_lowercase()
            }
        })
        .collect();
    let well_formed = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if !well_formed {
        return Err(ConfigError::InvalidName {
            name: raw.to_owned(),
            reason: "use 1 to 64 letters, digits, '_' or '-' (as in innodb_buffer_pool_size); \
                     component variables with a dot are not supported"
                .to_owned(),
        });
    }
    if name.starts_with("loose_") {
        return Err(ConfigError::InvalidName {
            name: raw.to_owned(),
            reason: "drop the loose- prefix: it makes the server ignore an option it does not \
                     know, and switchyard checks every option against the servers instead"
                .to_owned(),
        });
    }
    Ok(name)
}

/// A configuration with every name normalised ([`normalize_name`]) and every value trimmed.
///
/// # Errors
/// [`ConfigError::InvalidName`] for a bad name; [`ConfigError::DuplicateName`] when two
/// spellings name the same variable (`max-connections` and `max_connections`).
pub fn normalize_config(
    config: &BTreeMap<String, String>,
) -> Result<BTreeMap<String, String>, ConfigError> {
    let mut out: BTreeMap<String, String> = BTreeMap::new();
    let mut spelled: BTreeMap<String, &str> = BTreeMap::new();
    for (raw, value) in config {
        let name = normalize_name(raw)?;
        if let Some(first) = spelled.insert(name.clone(), raw) {
            return Err(ConfigError::DuplicateName {
                name,
                first: first.to_owned(),
                second: raw.clone(),
            });
        }
        out.insert(name, value.trim().to_owned());
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dashes_case_and_space_are_normalised() {
        assert_eq!(
            normalize_name("Innodb-Buffer-Pool-Size").expect("valid"),
            "innodb_buffer_pool_size"
        );
        assert_eq!(
            normalize_name("\tmax_connections ").expect("valid"),
            "max_connections"
        );
    }

    #[test]
    fn malformed_names_are_refused() {
        for bad in [
            "",
            "a.b",
            "x`y",
            "a b",
            "max_connections=5",
            &"x".repeat(65),
        ] {
            let err = normalize_name(bad).expect_err(bad);
            assert_eq!(err.category(), "invalid-name", "{bad}");
        }
    }

    #[test]
    fn two_spellings_of_one_variable_are_refused() {
        let config: BTreeMap<String, String> =
            [("max-connections", "10"), ("max_connections", "20")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect();
        let err = normalize_config(&config).expect_err("duplicate");
        assert!(err.to_string().contains("max_connections"), "{err}");
        assert_eq!(err.category(), "duplicate-name");
    }
}
