use std::sync::atomic::{AtomicUsize, Ordering};

use clap::{Args, Command, Parser};

use super::*;

const EXAMPLE: &str = include_str!("../../config.example.toml");

#[derive(Parser)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
}

fn flags(argv: &[&str]) -> ConfigArgs {
    let argv = std::iter::once("plaza").chain(argv.iter().copied());
    Cli::try_parse_from(argv).unwrap().config
}

/// A TOML file holding `text`, removed on drop.
struct TempToml(PathBuf);

impl TempToml {
    fn new(text: &str) -> Self {
        static N: AtomicUsize = AtomicUsize::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let path =
            std::env::temp_dir().join(format!("plaza-config-{}-{n}.toml", std::process::id()));
        std::fs::write(&path, text).unwrap();
        Self(path)
    }
}

impl Drop for TempToml {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Loads from a file holding `file`, the variables `env` and the flags `argv`, without
/// validating: a setting changed alone need not validate (turn.secret needs turn.urls).
fn load(file: Option<&str>, env: &[(&str, &str)], argv: &[&str]) -> Result<Config> {
    let file = file.map(TempToml::new);
    let mut args = flags(argv);
    args.config = file.as_ref().map(|f| f.0.clone());
    let env = |name: &str| {
        env.iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.to_string())
    };
    Config::layered(&env, &args)
}

/// Every setting's value, by key.
fn values(c: &Config) -> Vec<(&'static str, String)> {
    SETTINGS.iter().map(|s| (s.key, (s.get)(c))).collect()
}

fn assert_same(got: &Config, want: &Config, context: &str) {
    let diff: Vec<_> = values(got)
        .into_iter()
        .zip(values(want))
        .filter(|(g, w)| g != w)
        .map(|((key, g), (_, w))| format!("{key} = {g}, wanted {w}"))
        .collect();
    assert!(diff.is_empty(), "{context}: {diff:?}");
}

/// A TOML document setting `key` (e.g. `heartbeat.interval`) to `text`: as a number or
/// a boolean if it is one, else as a string.
fn toml_with(key: &str, text: &str) -> String {
    let value = toml::from_str::<toml::Table>(&format!("v = {text}")).map_or_else(
        |_| toml::Value::String(text.into()),
        |mut t| t.remove("v").unwrap(),
    );
    let (section, name) = key.split_once('.').unwrap_or(("", key));
    let line = toml::Table::from_iter([(name.to_string(), value)]);
    match section {
        "" => line.to_string(),
        _ => format!("[{section}]\n{line}"),
    }
}

/// Each setting, set alone to its sample in the file, the environment or a flag, changes
/// that setting and no other; and each source overrides the one below, even with the
/// default value.
#[test]
fn every_setting_comes_from_file_env_and_flag_in_that_order() {
    let default = Config::default();
    for s in SETTINGS {
        let mut sample = Config::default();
        (s.set)(&mut sample, s.sample).unwrap_or_else(|e| panic!("{} sample: {e}", s.key));
        assert_ne!(
            (s.get)(&sample),
            (s.get)(&default),
            "{}: sample is the default",
            s.key
        );
        let file = toml_with(s.key, s.sample);
        let (flag, env) = (format!("--{}", s.flag), s.env);
        let cases = [
            ("file", load(Some(&file), &[], &[]), &sample),
            ("env", load(None, &[(env, s.sample)], &[]), &sample),
            ("flag", load(None, &[], &[&flag, s.sample]), &sample),
            (
                "env over file",
                load(Some(&file), &[(env, s.default)], &[]),
                &default,
            ),
            (
                "flag over env",
                load(None, &[(env, s.sample)], &[&flag, s.default]),
                &default,
            ),
            (
                "flag over file",
                load(Some(&file), &[], &[&flag, s.default]),
                &default,
            ),
        ];
        for (case, got, want) in cases {
            let got = got.unwrap_or_else(|e| panic!("{} from {case}: {e}", s.key));
            assert_same(&got, want, &format!("{} from {case}", s.key));
        }
    }
}

#[test]
fn config_file_from_flag_or_variable() {
    let file = TempToml::new("listen = \"127.0.0.1:9000\"");
    let path = file.0.to_str().unwrap();
    let via_env = |name: &str| (name == "PLAZA_CONFIG").then(|| path.to_string());
    let c = Config::load_from(&via_env, &ConfigArgs::default()).unwrap();
    assert_eq!(c.listen.port(), 9000);
    let elsewhere = |name: &str| (name == "PLAZA_CONFIG").then(|| "/nonexistent.toml".into());
    let c = Config::load_from(&elsewhere, &flags(&["--config", path])).unwrap();
    assert_eq!(c.listen.port(), 9000);
}

#[test]
fn bad_variables_and_flags_are_named() {
    let err = load(None, &[("PLAZA_UDP_PORT", "http")], &[])
        .unwrap_err()
        .to_string();
    assert!(err.contains("PLAZA_UDP_PORT"), "{err}");
    let err = Cli::try_parse_from(["plaza", "--heartbeat-interval", "5"])
        .err()
        .unwrap();
    assert!(err.to_string().contains("--heartbeat-interval"), "{err}");
}

#[test]
fn list_flags_may_be_repeated() {
    let c = load(
        None,
        &[],
        &["--ice-ip", "10.0.0.1", "--ice-ip", "10.0.0.2,10.0.0.3"],
    )
    .unwrap();
    assert_eq!(c.ice.ips.len(), 3);
    assert!(Cli::try_parse_from(["plaza", "--listen", "[::]:1", "--listen", "[::]:2"]).is_err());
}

#[test]
fn defaults_are_valid() {
    let c = Config::default();
    c.validate().unwrap();
    assert_eq!(c.listen.port(), 8080);
    assert_eq!(c.heartbeat.interval, Duration::from_secs(5));
    assert_eq!(c.log.level, DEFAULT_LOG_FILTER);
}

#[test]
fn example_file_parses_to_the_defaults() {
    let c = Config::from_toml(EXAMPLE).unwrap();
    c.validate().unwrap();
    assert_same(&c, &Config::default(), "config.example.toml");
}

/// config.example.toml documents every setting (commented-out ones included), and
/// nothing else.
#[test]
fn example_file_documents_every_setting() {
    let mut section = String::new();
    let mut documented = Vec::new();
    for line in EXAMPLE.lines() {
        let line = line.trim_start_matches(['#', ' ']);
        if let Some(header) = line.strip_prefix('[').and_then(|l| l.split(']').next()) {
            section = header.trim_matches('[').to_string();
            if section == "ice_servers" || section == "ice.servers" {
                documented.push(section.clone()); // an array of tables: the tables' keys are not settings
            }
            continue;
        }
        let Some((key, _)) = line.split_once(" = ") else {
            continue;
        };
        if section == "ice_servers"
            || section == "ice.servers"
            || !key
                .chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        {
            continue;
        }
        documented.push(if section.is_empty() {
            key.to_string()
        } else {
            format!("{section}.{key}")
        });
    }
    documented.sort();
    documented.dedup();
    let mut keys: Vec<_> = SETTINGS.iter().map(|s| s.key.to_string()).collect();
    keys.sort();
    assert_eq!(documented, keys);
}

/// `--help` names every flag's variable and default; clap never reads the environment,
/// so it cannot show a secret's value; and `Debug` does not print secrets.
#[test]
fn help_names_variables_and_secrets_stay_hidden() {
    let mut cmd = ConfigArgs::augment_args(Command::new("plaza"));
    let help = cmd.render_long_help().to_string();
    for s in SETTINGS {
        assert!(
            help.contains(&format!("--{} <{}>", s.flag, s.value_name)),
            "--{}",
            s.flag
        );
        assert!(help.contains(&format!("[env: {}]", s.env)), "{}", s.env);
        if !s.default.is_empty() {
            assert!(
                help.contains(&format!("[default: {}]", s.default)),
                "{}",
                s.key
            );
        }
    }
    assert!(cmd.get_arguments().all(|a| a.get_env().is_none()));
    let argv = [
        "--auth-secret",
        "flag-secret-0123456789",
        "--turn-secret",
        "turn-flag-secret",
    ];
    let env = [("PLAZA_ADMIN_API_KEY", "env-secret-0123456789")];
    let c = load(None, &env, &argv).unwrap();
    let printed = format!("{c:?} {:?}", flags(&argv));
    for secret in [
        "flag-secret-0123456789",
        "turn-flag-secret",
        "env-secret-0123456789",
    ] {
        assert!(!printed.contains(secret), "{printed}");
    }
    assert_eq!(c.auth.secret, "flag-secret-0123456789");
    assert_eq!(c.admin.api_key, "env-secret-0123456789");
}

#[test]
fn errors_name_the_key() {
    let err = |toml: &str| {
        Config::from_toml(toml)
            .and_then(|c| c.validate())
            .unwrap_err()
            .to_string()
    };
    assert!(err("[heartbeat]\ninterval = \"10s\"\ntimeout = \"5s\"").contains("heartbeat.timeout"));
    assert!(
        err("[ice]\nudp_port = 5000\nudp_port_min = 10\nudp_port_max = 20")
            .contains("ice.udp_port")
    );
    assert!(err("[ice]\nnat_1to1_ips = [\"nope\"]").contains("ice.nat_1to1_ips"));
    // What webrtc-ice would refuse only at the first call: two sole IPs of one family.
    assert!(
        err("[ice]\nnat_1to1_ips = [\"203.0.113.7\", \"203.0.113.8\"]")
            .contains("cannot be combined")
    );
    assert!(err("[[ice_servers]]\nurls = [\"http://x\"]").contains("ice_servers[0].urls"));
    assert!(err("[limits]\nmax_rooms = 0").contains("limits.max_rooms"));
    assert!(err("lisen = \"x\"").contains("lisen"));
    assert!(err("[turn]\nsecret = \"s\"").contains("turn.urls"));
    assert!(err("[turn]\nurls = [\"turn:t.example:3478\"]").contains("turn.secret"));
    assert!(err("[[ice_servers]]\nurls = [\"turn::3478\"]").contains("no host"));
    assert!(err("[heartbeat]\ninterval = 5").contains("interval"));
    assert!(err("[ice]\nips = [\"nope\"]").contains("ips"));
    assert!(err("[[ice.servers]]\nurls = [\"http://x\"]").contains("ice.servers[0].urls"));
    assert!(err("[turn_provider]\napi_key = \"k\"").contains("turn_provider.url"));
    assert!(err("[auth]\naudience = \"a\"").contains("auth.audience"));
    assert!(err("[auth]\nissuer = \"i\"").contains("auth.issuer"));
    let with_secret = "[auth]\nsecret = \"0123456789abcdef\"\naudience = \"a\"\nissuer = \"i\"";
    let c = Config::from_toml(with_secret).unwrap();
    c.validate().unwrap();
    assert_eq!(c.auth.audience.as_deref(), Some("a"));
    assert_eq!(
        Config::from_toml("[auth]\naudience = \"\"")
            .unwrap()
            .auth
            .audience,
        None
    );
    // A bad provider URL is not echoed: it may hold a pasted key.
    let bad_url = err("[turn_provider]\nurl = \"ftp://x/?apiKey=pasted-key\"");
    assert!(bad_url.contains("turn_provider.url") && !bad_url.contains("pasted-key"));
    assert!(
        err("[turn_provider]\nurl = \"https://x\"\napi_key_param = \"a&b\"")
            .contains("turn_provider.api_key_param")
    );
    assert!(
        err("[turn_provider]\nurl = \"https://x\"\nttl = \"100ms\"").contains("turn_provider.ttl")
    );
}
