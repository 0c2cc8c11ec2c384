//! The accounts' credentials: the keys of the credentials Secret, generated passwords, and
//! reading them back with the checks the servers need. Pure: no API calls here.

use k8s_openapi::api::core::v1::Secret;

/// The keys of the credentials Secret (mounted in every pod at
/// [`crate::agent::SECRETS_DIR`], one file per key).
pub mod keys {
    /// The server's root password (the agent's own initialization).
    pub const ROOT_PASSWORD: &str = "root-password";
    /// The operator account's name.
    pub const OPERATOR_USER: &str = "operator-user";
    /// The operator account's password.
    pub const OPERATOR_PASSWORD: &str = "operator-password";
    /// The replication account's name.
    pub const REPLICATION_USER: &str = "replication-user";
    /// The replication account's password.
    pub const REPLICATION_PASSWORD: &str = "replication-password";
}

/// The accounts' credentials, as read from (or generated into) the credentials Secret.
#[derive(Clone, PartialEq, Eq)]
pub struct ClusterCredentials {
    /// The root password (the agent's initialization only).
    pub root_password: String,
    /// The operator account.
    pub operator_user: String,
    /// Its password.
    pub operator_password: String,
    /// The replication account.
    pub replication_user: String,
    /// Its password.
    pub replication_password: String,
}

impl std::fmt::Debug for ClusterCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterCredentials")
            .field("operator_user", &self.operator_user)
            .field("replication_user", &self.replication_user)
            .finish_non_exhaustive()
    }
}

/// A random alphanumeric password of 24 characters.
pub fn generate_password() -> String {
    use rand::Rng;
    use rand::distr::Alphanumeric;
    rand::rng()
        .sample_iter(&Alphanumeric)
        .take(24)
        .map(char::from)
        .collect()
}

/// Random alphanumeric passwords, 24 characters each, and the default account names.
pub fn generate_credentials() -> ClusterCredentials {
    ClusterCredentials {
        root_password: generate_password(),
        operator_user: "switchyard".into(),
        operator_password: generate_password(),
        replication_user: "replication".into(),
        replication_password: generate_password(),
    }
}

/// The Secret's data for `creds`.
pub fn secret_data(
    creds: &ClusterCredentials,
) -> std::collections::BTreeMap<String, k8s_openapi::ByteString> {
    [
        (keys::ROOT_PASSWORD, &creds.root_password),
        (keys::OPERATOR_USER, &creds.operator_user),
        (keys::OPERATOR_PASSWORD, &creds.operator_password),
        (keys::REPLICATION_USER, &creds.replication_user),
        (keys::REPLICATION_PASSWORD, &creds.replication_password),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), k8s_openapi::ByteString(v.as_bytes().to_vec())))
    .collect()
}

fn secret_text(secret: &Secret, key: &str) -> Option<String> {
    let bytes = secret.data.as_ref()?.get(key)?;
    String::from_utf8(bytes.0.clone()).ok()
}

/// Reads the credentials from `secret`, checking that the servers can take them.
///
/// # Errors
/// What is wrong, naming the key (never a password).
pub fn from_secret(secret: &Secret) -> Result<ClusterCredentials, String> {
    let get = |key: &str| {
        secret_text(secret, key).ok_or_else(|| format!("the key {key} is missing or not UTF-8"))
    };
    let creds = ClusterCredentials {
        root_password: get(keys::ROOT_PASSWORD)?,
        operator_user: get(keys::OPERATOR_USER)?,
        operator_password: get(keys::OPERATOR_PASSWORD)?,
        replication_user: get(keys::REPLICATION_USER)?,
        replication_password: get(keys::REPLICATION_PASSWORD)?,
    };
    for (what, user) in [
        (keys::OPERATOR_USER, &creds.operator_user),
        (keys::REPLICATION_USER, &creds.replication_user),
    ] {
        if switchyard_mysql::sql::validate_user(user).is_err() {
            return Err(format!("{what} must be letters, digits, '_', '-' or '.'"));
        }
    }
    for (what, pw) in [
        (keys::OPERATOR_PASSWORD, &creds.operator_password),
        (keys::REPLICATION_PASSWORD, &creds.replication_password),
    ] {
        if switchyard_mysql::sql::validate_password(pw).is_err() {
            return Err(format!(
                "{what} must be 1 to 32 printable ASCII characters other than ' and \\"
            ));
        }
    }
    Ok(creds)
}
