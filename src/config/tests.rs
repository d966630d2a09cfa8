//! Unit tests of precedence, file lookup, and the auth and TLS settings.

use std::collections::HashMap;
use std::path::PathBuf;

use super::*;

type Env = &'static [(&'static str, &'static str)];

struct Case {
    file: Option<&'static str>,
    env: Env,
    flags: Flags,
}

fn load(case: Case) -> Result<Config, ConfigError> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("fila.toml");
    if let Some(text) = case.file {
        std::fs::write(&path, text).unwrap();
    }
    let env: HashMap<&str, &str> = case.env.iter().copied().collect();
    let lookup = |name: &str| env.get(name).map(|value| (*value).to_owned());
    Config::load_with(&case.flags, &lookup, &[path])
}

/// The error text of a load with default flags that must fail.
fn refused(file: Option<&'static str>, env: Env) -> String {
    load(Case {
        file,
        env,
        flags: Flags::default(),
    })
    .unwrap_err()
    .to_string()
}

#[test]
fn defaults_without_file_env_or_flags() {
    let config = load(Case {
        file: None,
        env: &[],
        flags: Flags::default(),
    })
    .unwrap();
    assert_eq!(config.file, None);
    assert_eq!(config.data_dir, PathBuf::from("data"));
    assert_eq!(config.server, ServerSection::default());
    assert_eq!(config.server.listen_addr.0.to_string(), "0.0.0.0:5555");
    assert_eq!(config.storage.durability, Durability::Process);
}

#[test]
fn flags_beat_env_beat_file() {
    let file = Some("[server]\nlisten_addr = \"127.0.0.1:1000\"\nshards = 2\n");
    let env = &[
        ("FILA_LISTEN_ADDR", "127.0.0.1:2000"),
        ("FILA_SHARDS", "3"),
        ("FILA_DATA_DIR", "/env"),
    ];
    let from_file = load(Case {
        file,
        env: &[],
        flags: Flags::default(),
    })
    .unwrap();
    assert_eq!(from_file.server.listen_addr.0.port(), 1000);
    assert_eq!(from_file.server.shards.map(Bounded::get), Some(2));
    assert!(from_file.file.is_some());

    let from_env = load(Case {
        file,
        env,
        flags: Flags::default(),
    })
    .unwrap();
    assert_eq!(from_env.server.listen_addr.0.port(), 2000);
    assert_eq!(from_env.server.shards.map(Bounded::get), Some(3));
    assert_eq!(from_env.data_dir, PathBuf::from("/env"));

    let flags = Flags {
        listen: Some("127.0.0.1:3000".to_owned()),
        shards: Some(4),
        data_dir: Some(PathBuf::from("/flag")),
        pin_cores: Some(false),
        config: None,
        require_auth: false,
    };
    let from_flags = load(Case { file, env, flags }).unwrap();
    assert_eq!(from_flags.server.listen_addr.0.port(), 3000);
    assert_eq!(from_flags.server.shards.map(Bounded::get), Some(4));
    assert_eq!(from_flags.data_dir, PathBuf::from("/flag"));
    assert!(!from_flags.server.pin_cores);
}

#[test]
fn bad_env_and_flag_values_name_their_origin() {
    let env = &[("FILA_SHARDS", "many")];
    let message = refused(None, env);
    assert!(
        message.starts_with("environment variable FILA_SHARDS=\"many\" is invalid"),
        "{message}"
    );
    let flags = Flags {
        shards: Some(0),
        ..Flags::default()
    };
    let message = load(Case {
        file: None,
        env: &[],
        flags,
    })
    .unwrap_err()
    .to_string();
    assert!(
        message.starts_with("flag --shards \"0\" is invalid: must be between 1"),
        "{message}"
    );
}

#[test]
fn missing_config_flag_is_an_error() {
    let flags = Flags {
        config: Some(PathBuf::from("/nonexistent/fila.toml")),
        ..Flags::default()
    };
    let message = load(Case {
        file: None,
        env: &[],
        flags,
    })
    .unwrap_err()
    .to_string();
    assert_eq!(
        message,
        "config file /nonexistent/fila.toml (given with --config) does not exist"
    );
}

#[test]
fn auth_key_comes_from_env_before_file_and_empty_is_refused() {
    let file = Some("[auth]\nbootstrap_apikey = \"from-file\"\n");
    let from_file = load(Case {
        file,
        env: &[],
        flags: Flags::default(),
    })
    .unwrap();
    assert_eq!(
        from_file.auth.bootstrap_apikey.as_deref(),
        Some("from-file")
    );
    let from_env = load(Case {
        file,
        env: &[("FILA_BOOTSTRAP_APIKEY", "from-env")],
        flags: Flags::default(),
    })
    .unwrap();
    assert_eq!(from_env.auth.bootstrap_apikey.as_deref(), Some("from-env"));
    // Set but empty (FILA_BOOTSTRAP_APIKEY=$UNSET) refuses the start rather than running open.
    let empty = refused(None, &[("FILA_BOOTSTRAP_APIKEY", "")]);
    assert!(empty.contains("it is empty"), "{empty}");
    let empty_in_file = refused(Some("[auth]\nbootstrap_apikey = \"\"\n"), &[]);
    assert!(
        empty_in_file.contains("bootstrap_apikey"),
        "{empty_in_file}"
    );
    assert!(!format!("{:?}", from_env.auth).contains("from-env"));
}

#[test]
fn required_auth_without_a_key_is_refused() {
    let flag = load(Case {
        file: None,
        env: &[],
        flags: Flags {
            require_auth: true,
            ..Flags::default()
        },
    })
    .unwrap_err()
    .to_string();
    assert!(flag.contains("required by --require-auth"), "{flag}");
    let file = refused(Some("[auth]\nrequired = true\n"), &[]);
    assert!(file.contains("(required = true)"), "{file}");
    let ok = load(Case {
        file: Some("[auth]\nrequired = true\n"),
        env: &[("FILA_BOOTSTRAP_APIKEY", "k")],
        flags: Flags::default(),
    })
    .unwrap();
    assert!(ok.auth.required && ok.auth.enabled());
}

#[test]
fn tls_needs_cert_and_key() {
    let full = load(Case {
        file: Some("[tls]\ncert_file = \"c.pem\"\nkey_file = \"k.pem\"\nca_file = \"ca.pem\"\n"),
        env: &[],
        flags: Flags::default(),
    })
    .unwrap();
    let tls = full.tls.unwrap();
    assert_eq!(tls.cert_file, PathBuf::from("c.pem"));
    assert_eq!(tls.ca_file, Some(PathBuf::from("ca.pem")));
    for (text, missing) in [
        ("[tls]\n", "cert_file"),
        ("[tls]\ncert_file = \"c\"\n", "key_file"),
    ] {
        let message = refused(Some(text), &[]);
        assert!(message.contains(&format!("has no {missing}")), "{message}");
    }
}

#[test]
fn cluster_keys_are_reported_for_the_warning() {
    let file = Some("[cluster]\nnode_id = 1\n");
    let config = load(Case {
        file,
        env: &[],
        flags: Flags::default(),
    })
    .unwrap();
    assert_eq!(config.ignored_cluster_keys, ["node_id"]);
}

#[test]
fn unusable_bootstrap_keys_are_refused() {
    let long = "k".repeat(5000);
    let cases: [(&'static str, &str); 4] = [
        ("   ", "blank"),
        ("key\n", "whitespace"),
        ("a\u{1b}b", "control characters"),
        (Box::leak(long.into_boxed_str()), "longer than 4096"),
    ];
    for (key, problem) in cases {
        let env: Env = Box::leak(Box::new([("FILA_BOOTSTRAP_APIKEY", key)]));
        let message = refused(None, env);
        assert!(message.contains("FILA_BOOTSTRAP_APIKEY"), "{message}");
        assert!(message.contains(problem), "{message}");
    }
}
