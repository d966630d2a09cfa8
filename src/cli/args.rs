//! The command line of `fila` (clap derive): global connection flags and the command tree.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

/// The admin and debugging CLI of the Fila broker.
#[derive(Debug, Parser)]
#[command(
    name = "fila",
    version,
    about = "Admin and debugging CLI of the Fila message broker"
)]
pub struct Cli {
    /// Connection flags.
    #[command(flatten)]
    pub global: Global,
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Flags every command takes.
#[derive(Debug, Args)]
pub struct Global {
    /// Server address, host:port (a leading http:// or https:// is ignored).
    #[arg(
        long,
        global = true,
        value_name = "HOST:PORT",
        default_value = "localhost:5555"
    )]
    pub addr: String,
    /// Connect with TLS, trusting the system's CA certificates (see --tls-ca-cert).
    #[arg(long, global = true)]
    pub tls: bool,
    /// Trust only the CA certificate(s) in this PEM file (implies --tls).
    #[arg(long, global = true, value_name = "PATH")]
    pub tls_ca_cert: Option<PathBuf>,
    /// Client certificate chain (PEM) for mutual TLS, with --tls-key (implies --tls).
    #[arg(long, global = true, value_name = "PATH", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of --tls-cert (implies --tls).
    #[arg(long, global = true, value_name = "PATH", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// API key sent in the handshake.
    #[arg(long, global = true, value_name = "KEY")]
    pub api_key: Option<String>,
    /// Output format of read commands.
    #[arg(long, global = true, value_enum, default_value_t = Output::Text)]
    pub output: Output,
}

impl Global {
    /// True when any TLS flag was given.
    pub fn wants_tls(&self) -> bool {
        self.tls || self.tls_ca_cert.is_some() || self.tls_cert.is_some() || self.tls_key.is_some()
    }

    /// The TLS options when any TLS flag was given (`--tls-cert` and `--tls-key` come as a pair:
    /// clap refuses one without the other).
    pub fn tls_options(&self) -> Option<crate::cli::tls::TlsOptions> {
        self.wants_tls().then(|| crate::cli::tls::TlsOptions {
            ca_cert: self.tls_ca_cert.clone(),
            client_cert: self.tls_cert.clone().zip(self.tls_key.clone()),
        })
    }
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// Lines and aligned tables for people.
    Text,
    /// One JSON document on stdout.
    Json,
}

/// The command tree.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Create, delete, list and inspect queues.
    #[command(subcommand)]
    Queue(QueueCommand),
    /// Runtime configuration (key/value; `throttle.<name>` = "<rate_per_second>,<burst>").
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Move messages from a dead-letter queue back to its parent queue.
    Redrive {
        /// The dead-letter queue (its name ends in .dlq).
        dlq: String,
        /// Most messages to move; 0 moves all.
        #[arg(long, default_value_t = 0)]
        count: u64,
    },
    /// API keys and their permissions.
    #[command(subcommand)]
    Auth(AuthCommand),
    /// Enqueue one message and print its id.
    Enqueue {
        /// Target queue.
        queue: String,
        /// A header, key=value; repeat for more.
        #[arg(long = "header", value_name = "KEY=VALUE")]
        headers: Vec<String>,
        /// Payload text.
        #[arg(long, conflicts_with = "file")]
        payload: Option<String>,
        /// Read the payload from a file.
        #[arg(long, value_name = "PATH")]
        file: Option<PathBuf>,
    },
    /// Receive messages and print them; optionally ack or nack each one.
    Consume {
        /// Queue to receive from.
        queue: String,
        /// How many messages to receive (at least 1).
        #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
        count: u64,
        /// Ack each message after printing it.
        #[arg(long, conflicts_with = "nack")]
        ack: bool,
        /// Nack each message with this error text after printing it.
        #[arg(long, value_name = "ERROR")]
        nack: Option<String>,
        /// Stop when no message arrives for this long (default: wait forever).
        #[arg(long, value_name = "MS")]
        timeout_ms: Option<u64>,
    },
    /// Lua hooks: dry runs.
    #[command(subcommand)]
    Lua(LuaCommand),
    /// Live view of queues, fairness keys and throttles (q or Ctrl-C quits).
    Top {
        /// Queue to show in detail (default: the first one; Up/Down selects).
        queue: Option<String>,
        /// Refresh interval in milliseconds.
        #[arg(long, value_name = "MS", default_value_t = 1000)]
        interval_ms: u64,
    },
}

/// `fila lua ...`
#[derive(Debug, Subcommand)]
pub enum LuaCommand {
    /// Run a hook once against a described message and print its decision; nothing is
    /// enqueued. The script is --script, or the queue's own hook.
    Test {
        /// The queue (msg.queue; its own hook runs when --script is not given).
        queue: String,
        /// Which hook.
        #[arg(long, value_enum, default_value_t = HookArg::OnEnqueue)]
        hook: HookArg,
        /// Lua source, or @path to read a file.
        #[arg(long, value_name = "LUA")]
        script: Option<String>,
        /// A header, key=value; repeat for more.
        #[arg(long = "header", value_name = "KEY=VALUE")]
        headers: Vec<String>,
        /// msg.payload_size (on_enqueue).
        #[arg(long, default_value_t = 0)]
        payload_size: u32,
        /// msg.attempts (on_failure).
        #[arg(long, default_value_t = 1)]
        attempts: u32,
        /// msg.error (on_failure).
        #[arg(long, default_value = "")]
        error: String,
    },
}

/// A hook name on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum HookArg {
    /// `on_enqueue`.
    OnEnqueue,
    /// `on_failure`.
    OnFailure,
}

/// `fila queue ...`
#[derive(Debug, Subcommand)]
pub enum QueueCommand {
    /// Create a queue (and its NAME.dlq).
    Create {
        /// Queue name.
        name: String,
        /// on_enqueue hook: Lua source, or @path to read a file.
        #[arg(long, value_name = "LUA")]
        on_enqueue: Option<String>,
        /// on_failure hook: Lua source, or @path to read a file.
        #[arg(long, value_name = "LUA")]
        on_failure: Option<String>,
        /// Lease length in milliseconds (0 = server default, 30000).
        #[arg(long, value_name = "MS", default_value_t = 0)]
        visibility_timeout: u64,
    },
    /// Delete a queue (and its automatic NAME.dlq).
    Delete {
        /// Queue name.
        name: String,
    },
    /// List queues.
    List,
    /// Show one queue's statistics.
    Inspect {
        /// Queue name.
        name: String,
    },
}

/// `fila config ...`
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Set a key (an empty value deletes it).
    Set {
        /// Key.
        key: String,
        /// Value.
        #[arg(allow_hyphen_values = true)]
        value: String,
    },
    /// Print a key's value.
    Get {
        /// Key.
        key: String,
    },
    /// List keys and values.
    List {
        /// Only keys starting with this prefix.
        #[arg(long, default_value = "")]
        prefix: String,
    },
}

/// `fila auth ...`
#[derive(Debug, Subcommand)]
pub enum AuthCommand {
    /// Create an API key; prints its id and token (shown only once).
    Create {
        /// Label.
        #[arg(long)]
        name: String,
        /// Expiry, Unix milliseconds (default: never).
        #[arg(long, value_name = "UNIX_MS", default_value_t = 0)]
        expires_at: u64,
        /// The key bypasses every permission check.
        #[arg(long)]
        superadmin: bool,
    },
    /// Revoke an API key.
    Revoke {
        /// Key id.
        id: String,
    },
    /// List API keys (never their tokens).
    List,
    /// Permissions of an API key.
    #[command(subcommand)]
    Acl(AclCommand),
}

/// `fila auth acl ...`
#[derive(Debug, Subcommand)]
pub enum AclCommand {
    /// Replace a key's permissions.
    Set {
        /// Key id.
        id: String,
        /// KIND:PATTERN, KIND one of produce, consume, admin; PATTERN `*`, a queue, or `prefix.*`.
        #[arg(long = "perm", value_name = "KIND:PATTERN", required = true, num_args = 1..)]
        perms: Vec<String>,
    },
    /// Show a key's permissions.
    Get {
        /// Key id.
        id: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("fila").chain(args.iter().copied()))
    }

    #[test]
    fn tls_flags_imply_tls_and_pair_cert_with_key() {
        let cli = parse(&["queue", "list"]).unwrap();
        assert_eq!(cli.global.tls_options(), None);
        let cli = parse(&["--tls", "queue", "list"]).unwrap();
        assert_eq!(
            cli.global.tls_options(),
            Some(crate::cli::tls::TlsOptions::default())
        );
        let cli = parse(&["queue", "list", "--tls-ca-cert", "ca.pem"]).unwrap();
        let options = cli.global.tls_options().unwrap();
        assert_eq!(options.ca_cert, Some(PathBuf::from("ca.pem")));
        assert_eq!(options.client_cert, None);
        let cli = parse(&["--tls-cert", "c.pem", "--tls-key", "k.pem", "top"]).unwrap();
        let options = cli.global.tls_options().unwrap();
        assert_eq!(
            options.client_cert,
            Some((PathBuf::from("c.pem"), PathBuf::from("k.pem")))
        );
        for lone in [
            &["--tls-cert", "c.pem", "queue", "list"][..],
            &["--tls-key", "k.pem", "queue", "list"],
        ] {
            let error = parse(lone).unwrap_err();
            assert_eq!(
                error.kind(),
                clap::error::ErrorKind::MissingRequiredArgument,
                "{lone:?}"
            );
        }
    }

    #[test]
    fn auth_commands_parse() {
        let cli = parse(&["auth", "create", "--name", "ci", "--superadmin"]).unwrap();
        assert!(matches!(
            cli.command,
            Command::Auth(AuthCommand::Create {
                expires_at: 0,
                superadmin: true,
                ..
            })
        ));
        let cli = parse(&[
            "auth",
            "acl",
            "set",
            "id",
            "--perm",
            "produce:a",
            "--perm",
            "admin:*",
        ])
        .unwrap();
        let Command::Auth(AuthCommand::Acl(AclCommand::Set { perms, .. })) = cli.command else {
            panic!("not acl set");
        };
        assert_eq!(perms, ["produce:a", "admin:*"]);
        // At least one --perm.
        assert!(parse(&["auth", "acl", "set", "id"]).is_err());
    }
}
