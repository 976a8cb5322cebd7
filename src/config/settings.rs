//! The `settings!` macro that declares the configuration, the table it generates, and
//! the command-line flags built from that table.

use std::fmt;
use std::path::PathBuf;

use clap::{Arg, ArgAction, ArgMatches, Command};

use super::{Config, SETTINGS};

/// One setting, as declared in `settings!`.
pub struct Setting {
    /// TOML key, e.g. `heartbeat.interval`.
    pub key: &'static str,
    /// Command-line flag, without the dashes.
    pub flag: &'static str,
    /// Environment variable.
    pub env: &'static str,
    /// The default, in command-line syntax (`""`: empty list, none, empty string).
    pub default: &'static str,
    pub help: &'static str,
    /// Never shown: no default in `--help`, `<redacted>` in `Debug`.
    pub secret: bool,
    /// A valid value other than the default (tests set each setting to it).
    pub sample: &'static str,
    /// What `--help` shows for the value, e.g. `DURATION`.
    pub value_name: &'static str,
    /// A comma-separated list, so its flag may also be repeated.
    pub list: bool,
    /// The setting's value in a config, as `Debug` shows it (secrets included: for tests).
    pub get: fn(&Config) -> String,
    /// Sets it from command-line syntax.
    pub set: fn(&mut Config, &str) -> Result<(), String>,
    pub(super) check: fn(&str) -> Result<String, String>,
}

/// Declares the configuration; used once, in `config/mod.rs`. Each entry
///
/// ```text
/// /// Help text, also the field's doc.
/// name: Type = "default", flag "flag-name", env "PLAZA_NAME", sample "other value" [, secret];
/// ```
///
/// becomes a field of its section's struct (read from TOML by `Value::from_toml`), its
/// `Default` (the default text read by `Value::parse`, the parser of the flag, so the
/// default `--help` shows is the real one), and a row of `SETTINGS`, through which the
/// flags and the `PLAZA_*` variables are applied.
macro_rules! settings {
    (
        $(#[$meta:meta])* pub struct Config {
            $( $(#[doc = $doc:literal])+ $field:ident: $ty:ty = $default:expr,
               flag $flag:literal, env $env:literal, sample $sample:literal $(, $secret:ident)?; )*
        }
        $( $(#[$smeta:meta])* pub struct $Sec:ident in $sec:ident {
            $( $(#[doc = $sdoc:literal])+ $sfield:ident: $sty:ty = $sdefault:expr,
               flag $sflag:literal, env $senv:literal, sample $ssample:literal $(, $ssecret:ident)?; )*
        } )*
    ) => {
        settings!(@struct [$(#[$meta])*] Config {
            $( [$($doc)+] $field: $ty = $default, [$($secret)?]; )*
        } $($sec: $Sec)*);
        $( settings!(@struct [$(#[$smeta])*] $Sec {
            $( [$($sdoc)+] $sfield: $sty = $sdefault, [$($ssecret)?]; )*
        }); )*

        /// Every setting, in declaration order.
        pub static SETTINGS: &[Setting] = &[
            $( settings!(@row stringify!($field), [$field], $ty, $default, $flag, $env, $sample,
                         [$($doc)+], [$($secret)?]), )*
            $( $( settings!(@row concat!(stringify!($sec), ".", stringify!($sfield)), [$sec.$sfield],
                            $sty, $sdefault, $sflag, $senv, $ssample, [$($sdoc)+], [$($ssecret)?]), )* )*
        ];
    };

    (@struct [$(#[$meta:meta])*] $Name:ident {
        $( [$($doc:literal)+] $field:ident: $ty:ty = $default:expr, [$($secret:ident)?]; )*
    } $($sec:ident: $Sec:ident)*) => {
        $(#[$meta])*
        #[derive(Clone, Deserialize)]
        #[serde(default, deny_unknown_fields)]
        pub struct $Name {
            $( $(#[doc = $doc])+ #[serde(deserialize_with = "value::de")] pub $field: $ty, )*
            $( pub $sec: $Sec, )*
        }

        impl Default for $Name {
            fn default() -> Self {
                Self {
                    $( $field: value::default(concat!(stringify!($Name), ".", stringify!($field)), $default), )*
                    $( $sec: $Sec::default(), )*
                }
            }
        }

        impl std::fmt::Debug for $Name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($Name))
                    $( .field(stringify!($field), settings!(@show self.$field $(, $secret)?)) )*
                    $( .field(stringify!($sec), &self.$sec) )*
                    .finish()
            }
        }
    };

    (@row $key:expr, [$($path:tt)+], $ty:ty, $default:expr, $flag:literal, $env:literal, $sample:literal,
          [$($doc:literal)+], [$($secret:ident)?]) => {
        Setting {
            key: $key,
            flag: $flag,
            env: $env,
            default: $default,
            help: concat!($($doc),+).trim_ascii(),
            secret: settings!(@is_secret $($secret)?),
            sample: $sample,
            value_name: if settings!(@is_secret $($secret)?) { "SECRET" } else { <$ty as Value>::HINT },
            list: <$ty as Value>::LIST,
            get: |c| format!("{:?}", c.$($path)+),
            set: |c, text| {
                c.$($path)+ = Value::parse(text)?;
                Ok(())
            },
            check: value::check::<$ty>,
        }
    };

    (@show $value:expr) => { &$value };
    (@show $value:expr, secret) => { &"<redacted>" };
    (@is_secret) => { false };
    (@is_secret secret) => { true };
}

/// Command-line flags of `plaza` (and `plaza serve`): `--config`, and one flag per
/// setting built from [`SETTINGS`]. Each overrides the file and the environment.
#[derive(Clone, Default)]
pub struct ConfigArgs {
    /// TOML configuration file (see config.example.toml); else `PLAZA_CONFIG`.
    pub config: Option<PathBuf>,
    /// The flags given, in command-line syntax (clap has checked that they parse).
    pub(super) flags: Vec<(&'static Setting, String)>,
}

/// Names the flags given, not their values: they may be secrets.
impl fmt::Debug for ConfigArgs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let flags: Vec<_> = self.flags.iter().map(|(s, _)| s.flag).collect();
        f.debug_struct("ConfigArgs")
            .field("config", &self.config)
            .field("flags", &flags)
            .finish()
    }
}

impl Setting {
    /// The `--help` line. The variable is named here rather than given to clap because
    /// `Config::load` reads the environment itself (so that tests can pass their own),
    /// which also means clap never shows a variable's value.
    fn help_line(&self) -> String {
        let (help, env) = (self.help, self.env);
        match self.default {
            d if self.secret || d.is_empty() => format!("{help} [env: {env}]"),
            d => format!("{help} [default: {d}] [env: {env}]"),
        }
    }
}

impl clap::Args for ConfigArgs {
    fn augment_args(cmd: Command) -> Command {
        let config = Arg::new("config")
            .long("config")
            .value_name("FILE")
            .value_parser(clap::value_parser!(PathBuf))
            .help("TOML configuration file (see config.example.toml) [env: PLAZA_CONFIG]");
        SETTINGS.iter().fold(cmd.arg(config), |cmd, s| {
            cmd.arg(
                Arg::new(s.flag)
                    .long(s.flag)
                    .value_name(s.value_name)
                    .help(s.help_line())
                    .value_parser(s.check)
                    .action(if s.list {
                        ArgAction::Append
                    } else {
                        ArgAction::Set
                    }),
            )
        })
    }

    fn augment_args_for_update(cmd: Command) -> Command {
        Self::augment_args(cmd)
    }
}

impl clap::FromArgMatches for ConfigArgs {
    fn from_arg_matches(matches: &ArgMatches) -> Result<Self, clap::Error> {
        let mut args = Self::default();
        args.update_from_arg_matches(matches)?;
        Ok(args)
    }

    fn update_from_arg_matches(&mut self, matches: &ArgMatches) -> Result<(), clap::Error> {
        if let Some(path) = matches.get_one::<PathBuf>("config") {
            self.config = Some(path.clone());
        }
        for s in SETTINGS {
            if let Some(values) = matches.get_many::<String>(s.flag) {
                // A repeated list flag adds to the list: `--ice-ip a --ice-ip b` = `--ice-ip a,b`.
                let text = values.map(String::as_str).collect::<Vec<_>>().join(",");
                self.flags.retain(|(given, _)| given.key != s.key);
                self.flags.push((s, text));
            }
        }
        Ok(())
    }
}
