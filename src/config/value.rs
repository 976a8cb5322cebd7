//! How a setting's value is read: one parser per type, for the declared default, the
//! flag, the `PLAZA_*` variable and the file alike, so that they cannot disagree.

use std::fmt::Display;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use serde::Deserialize;
use toml::Value as Toml;

use plaza_protocol::IceServer;

/// The type of a setting.
pub trait Value: Sized {
    /// What `--help` shows for the value, e.g. `DURATION`.
    const HINT: &'static str;
    /// A comma-separated list, so its flag may also be repeated.
    const LIST: bool = false;

    /// Command-line syntax: flags, `PLAZA_*` variables and the declared defaults.
    fn parse(text: &str) -> Result<Self, String>;

    /// The file: a TOML string is read as on the command line, and so is a number or a
    /// boolean (`udp_port = 50000`, `json = true`).
    fn from_toml(value: Toml) -> Result<Self, String> {
        match value {
            Toml::String(s) => Self::parse(&s),
            v @ (Toml::Integer(_) | Toml::Float(_) | Toml::Boolean(_)) => {
                Self::parse(&v.to_string())
            }
            v => Err(format!("expected {}, found {}", Self::HINT, v.type_str())),
        }
    }
}

fn parsed<T: FromStr<Err: Display>>(text: &str) -> Result<T, String> {
    text.trim().parse().map_err(|e| format!("{text:?}: {e}"))
}

macro_rules! value {
    ($($ty:ty, $hint:literal, $parse:expr;)*) => {$(
        impl Value for $ty {
            const HINT: &'static str = $hint;
            fn parse(text: &str) -> Result<Self, String> {
                ($parse)(text)
            }
        }
    )*};
}

value! {
    SocketAddr, "ADDR", parsed;
    PathBuf, "PATH", |t: &str| Ok(t.into());
    String, "TEXT", |t: &str| Ok(t.into());
    Duration, "DURATION", |t: &str| humantime::parse_duration(t.trim()).map_err(|e| format!("{t:?}: {e}"));
    usize, "N", parsed;
    u32, "N", parsed;
    u16, "PORT", parsed;
    f64, "NUMBER", parsed;
    bool, "BOOL", parsed;
    crate::client_addr::ForwardedHeader, "HEADER", parsed;
}

/// `""` is none (in the file, leaving the key out is the usual way to say it).
impl<T: Value> Value for Option<T> {
    const HINT: &'static str = T::HINT;
    fn parse(text: &str) -> Result<Self, String> {
        match text.trim() {
            "" => Ok(None),
            t => T::parse(t).map(Some),
        }
    }
}

/// An element of a list: comma-separated on the command line (`""` = empty), a TOML
/// array of strings in the file.
pub trait Item: FromStr<Err: Display> {
    const HINT: &'static str;
}

impl Item for IpAddr {
    const HINT: &'static str = "IP,...";
}

impl Item for crate::client_addr::Cidr {
    const HINT: &'static str = "IP[/N],...";
}

impl Item for String {
    const HINT: &'static str = "TEXT,...";
}

impl<T: Item> Value for Vec<T> {
    const HINT: &'static str = T::HINT;
    const LIST: bool = true;
    fn parse(text: &str) -> Result<Self, String> {
        let items = text.split(',').filter(|s| !s.trim().is_empty());
        items.map(parsed).collect()
    }
    fn from_toml(value: Toml) -> Result<Self, String> {
        let item = |v: Toml| match v {
            Toml::String(s) => parsed(&s),
            v => Err(format!("expected a string, found {}", v.type_str())),
        };
        match value {
            Toml::Array(items) => items.into_iter().map(item).collect(),
            Toml::String(s) => Self::parse(&s),
            v => Err(format!("expected an array, found {}", v.type_str())),
        }
    }
}

/// JSON on the command line (as browsers write `iceServers`), `[[ice_servers]]` tables
/// in the file.
impl Value for Vec<IceServer> {
    const HINT: &'static str = "JSON";
    fn parse(text: &str) -> Result<Self, String> {
        if text.trim().is_empty() {
            return Ok(Vec::new());
        }
        serde_json::from_str(text).map_err(|e| format!("expected [{{\"urls\": [...]}}]: {e}"))
    }
    fn from_toml(value: Toml) -> Result<Self, String> {
        match value {
            Toml::String(s) => Self::parse(&s),
            v => v
                .try_into()
                .map_err(|e: toml::de::Error| e.message().to_owned()),
        }
    }
}

/// The `deserialize_with` of every setting.
pub fn de<'de, D: serde::Deserializer<'de>, T: Value>(d: D) -> Result<T, D::Error> {
    T::from_toml(Toml::deserialize(d)?).map_err(serde::de::Error::custom)
}

/// A setting's default: its declared text, read as if typed as the flag.
pub fn default<T: Value>(key: &str, text: &str) -> T {
    T::parse(text).unwrap_or_else(|e| panic!("the default of {key} does not parse: {e}"))
}

/// clap's parser for a flag: checks the value now; `Setting::set` applies it later.
pub fn check<T: Value>(text: &str) -> Result<String, String> {
    T::parse(text).map(|_| text.to_owned())
}
