//! The exit-code convention shared by every subcommand.
//!
//! | code | meaning |
//! | ---- | ------- |
//! | 0    | yes / done |
//! | 2    | refused (the change is not allowed; the reason is printed) |
//! | 3    | allowed with a condition (the condition is printed) |
//! | 64   | invalid input, including usage errors (`EX_USAGE`) |
//! | 1    | internal error |

use std::process::ExitCode;

/// The outcome of a subcommand, mapped to its exit code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    /// Yes, or done.
    Ok,
    /// Refused: the request is well formed but not allowed.
    Refused,
    /// Allowed only with a condition that was printed.
    Conditional,
    /// The input was invalid (usage, file, flavor, version...).
    InvalidInput,
    /// Something failed inside switchyard.
    Internal,
}

impl Exit {
    /// The numeric process exit code.
    pub fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Refused => 2,
            Exit::Conditional => 3,
            Exit::InvalidInput => 64,
            Exit::Internal => 1,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(exit: Exit) -> Self {
        ExitCode::from(exit.code())
    }
}

/// Maps a clap parse failure: help and version go to stdout with 0, usage errors exit 64.
pub fn from_clap(err: clap::Error) -> ExitCode {
    use clap::error::ErrorKind;
    let code = match err.kind() {
        ErrorKind::DisplayHelp
        | ErrorKind::DisplayVersion
        | ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => Exit::Ok,
        _ => Exit::InvalidInput,
    };
    // clap already formats a single clear message with a usage hint.
    let _ = err.print();
    code.into()
}

/// Prints an invalid-input message as one line on stderr and returns [`Exit::InvalidInput`].
pub fn invalid(message: impl std::fmt::Display) -> Exit {
    eprintln!("error: {message}");
    Exit::InvalidInput
}
