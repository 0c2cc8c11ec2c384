//! The accounts every testbed cluster has, with passwords generated per
//! cluster. `Debug` never shows a password.

use std::fmt;

use rand::Rng as _;
use rand::distr::Alphanumeric;

/// The application database every cluster has.
pub const APP_DATABASE: &str = "app";

/// A user name and its password.
#[derive(Clone, PartialEq, Eq)]
pub struct Account {
    user: String,
    password: String,
}

impl Account {
    /// An account with a fresh random password (24 alphanumeric characters,
    /// so it never needs quoting).
    pub fn generate(user: &str) -> Account {
        let password = rand::rng()
            .sample_iter(&Alphanumeric)
            .take(24)
            .map(char::from)
            .collect();
        Account {
            user: user.to_string(),
            password,
        }
    }

    /// The user name (the host part is always `%`).
    pub fn user(&self) -> &str {
        &self.user
    }

    /// The password. Keep it out of logs and error messages.
    pub fn password(&self) -> &str {
        &self.password
    }
}

impl fmt::Debug for Account {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Account")
            .field("user", &self.user)
            .field("password", &"<redacted>")
            .finish()
    }
}

/// The accounts of one cluster, all with host `%`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Credentials {
    /// `switchyard`: ALL PRIVILEGES on `*.*` WITH GRANT OPTION; what the
    /// operator connects as.
    pub operator: Account,
    /// `repl`: REPLICATION SLAVE; what replicas connect to their source as.
    pub replication: Account,
    /// `app`: SELECT, INSERT, UPDATE, DELETE on `app.*` only.
    pub application: Account,
    /// `app_admin`: ALL PRIVILEGES on `*.*` (an application connecting with
    /// far more rights than it needs; on MariaDB this includes READ ONLY
    /// ADMIN, which `read_only` does not stop).
    pub privileged: Account,
}

impl Credentials {
    /// Fresh random passwords for the four accounts.
    pub fn generate() -> Credentials {
        Credentials {
            operator: Account::generate("switchyard"),
            replication: Account::generate("repl"),
            application: Account::generate("app"),
            privileged: Account::generate("app_admin"),
        }
    }

    /// The accounts in the order they are created.
    pub fn all(&self) -> [&Account; 4] {
        [
            &self.operator,
            &self.replication,
            &self.application,
            &self.privileged,
        ]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_redacts_passwords() {
        let creds = Credentials::generate();
        let shown = format!("{creds:?} {:#?}", creds.operator);
        for account in creds.all() {
            assert!(!shown.contains(account.password()), "{shown}");
            assert!(shown.contains(account.user()));
        }
        assert!(shown.contains("<redacted>"));
    }

    #[test]
    fn passwords_differ_per_account_and_cluster() {
        let a = Credentials::generate();
        let b = Credentials::generate();
        assert_ne!(a.operator.password(), b.operator.password());
        assert_ne!(a.operator.password(), a.application.password());
        assert_eq!(a.operator.password().len(), 24);
    }
}
