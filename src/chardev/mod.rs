//! Character devices, as QEMU's `-chardev` describes them, and the options
//! that name one: `-serial DEV`, `-mon chardev=ID,mode=...`, `-qmp DEV`,
//! `-monitor DEV`.
//!
//! This file parses the options into a [`ChardevConfig`]; [`backend`] opens
//! the devices (stdio, files, sockets) and moves bytes between them and
//! their frontends (COM1, the monitors).

pub mod backend;
pub mod virtio_port;

use std::path::PathBuf;

use anyhow::{bail, Context, Result};

/// Where a socket chardev listens or connects.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SockAddr {
    Unix(PathBuf),
    Tcp {
        host: String,
        port: u16,
    },
    /// A socket the parent process opened (`fd=N`): listening or connected.
    Fd(i32),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SocketOpts {
    pub addr: SockAddr,
    pub server: bool,
    /// A server waits for its first client before the machine starts.
    pub wait: bool,
}

/// A chardev backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Backend {
    Null,
    Stdio,
    File(PathBuf),
    Socket(SocketOpts),
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ChardevSpec {
    pub id: String,
    pub backend: Backend,
    /// Several frontends share it; Ctrl-A c moves the input focus.
    pub mux: bool,
}

/// What a monitor speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MonitorMode {
    /// QMP (JSON).
    Control,
    /// HMP (the human monitor).
    Readline,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MonitorSpec {
    pub chardev: String,
    pub mode: MonitorMode,
    /// QMP replies pretty-printed.
    pub pretty: bool,
}

/// Every chardev and who uses it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ChardevConfig {
    pub chardevs: Vec<ChardevSpec>,
    /// COM1's chardev; `None`: COM1 is not connected.
    pub serial: Option<String>,
    pub monitors: Vec<MonitorSpec>,
}

/// The options this module parses, as given on the command line.
#[derive(Clone, Debug, Default)]
pub struct ChardevOptions<'a> {
    pub chardev: &'a [String],
    pub serial: &'a str,
    pub mon: &'a [String],
    pub qmp: &'a [String],
    pub monitor: &'a [String],
}

fn on_off(opt: &str, key: &str, v: Option<&str>) -> Result<bool> {
    match v {
        None | Some("on") | Some("yes") | Some("true") => Ok(true),
        Some("off") | Some("no") | Some("false") => Ok(false),
        Some(other) => bail!("{opt}: {key}={other}: use on or off"),
    }
}

/// Splits `a,b=c,d` into `(key, value)` pairs (`,,` is a literal comma,
/// as in QEMU).
pub(crate) fn split_props(s: &str) -> Vec<(String, Option<String>)> {
    let mut parts = Vec::new();
    let mut cur = String::new();
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == ',' {
            if chars.peek() == Some(&',') {
                chars.next();
                cur.push(',');
            } else {
                parts.push(std::mem::take(&mut cur));
            }
        } else {
            cur.push(c);
        }
    }
    parts.push(cur);
    parts
        .into_iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), Some(v.to_string())),
            None => (p, None),
        })
        .collect()
}

fn parse_port(opt: &str, p: &str) -> Result<u16> {
    p.parse()
        .with_context(|| format!("{opt}: '{p}' is not a TCP port number"))
}

/// Applies the socket properties `server`, `wait`, `nowait`, `nodelay`,
/// `telnet`... to `s`; other keys are returned.
fn socket_prop(opt: &str, s: &mut SocketOpts, k: &str, v: Option<&str>) -> Result<bool> {
    match k {
        "server" => s.server = on_off(opt, k, v)?,
        "wait" => s.wait = on_off(opt, k, v)?,
        "nowait" => s.wait = false,
        "nodelay" | "delay" | "reconnect" | "ipv4" | "ipv6" | "to" => {
            log::warn!(target: "unimp", "{opt}: socket property '{k}' is accepted and ignored")
        }
        "telnet" | "websocket" | "tls-creds" if on_off(opt, k, v).unwrap_or(true) => {
            bail!("{opt}: {k} is not supported by hx86")
        }
        "telnet" | "websocket" => {}
        _ => return Ok(false),
    }
    Ok(true)
}

/// `-chardev BACKEND,id=ID,...`.
pub fn parse_chardev(spec: &str) -> Result<ChardevSpec> {
    let opt = format!("-chardev {spec}");
    let mut props = split_props(spec).into_iter();
    let (kind, _) = props.next().unwrap_or_default();
    let mut id = None;
    let mut mux = false;
    let mut path = None;
    let mut host = None;
    let mut port = None;
    let mut fd = None;
    let mut sock = SocketOpts {
        addr: SockAddr::Fd(-1),
        server: false,
        wait: true,
    };
    for (k, v) in props {
        let val = || {
            v.clone()
                .with_context(|| format!("{opt}: {k} needs a value ({k}=...)"))
        };
        match k.as_str() {
            "id" => id = Some(val()?),
            "mux" => mux = on_off(&opt, &k, v.as_deref())?,
            "path" => path = Some(val()?),
            "host" => host = Some(val()?),
            "port" => port = Some(parse_port(&opt, &val()?)?),
            "fd" => {
                let s = val()?;
                fd = Some(s.parse::<i32>().ok().filter(|&n| n >= 0).with_context(|| {
                    format!("{opt}: fd={s}: expected a file descriptor number")
                })?);
            }
            "signal" | "logfile" | "logappend" | "append" => {
                log::warn!(target: "unimp", "{opt}: property '{k}' is accepted and ignored")
            }
            _ if kind == "socket" && socket_prop(&opt, &mut sock, &k, v.as_deref())? => {}
            _ => bail!("{opt}: unknown property '{k}' for a {kind} chardev"),
        }
    }
    let id = id.with_context(|| format!("{opt}: the chardev needs an id (id=NAME)"))?;
    let backend = match kind.as_str() {
        "null" => Backend::Null,
        "stdio" => Backend::Stdio,
        "file" => Backend::File(PathBuf::from(
            path.with_context(|| format!("{opt}: a file chardev needs path=FILE"))?,
        )),
        "socket" => {
            sock.addr = match (path, host, port, fd) {
                (Some(p), None, None, None) => SockAddr::Unix(PathBuf::from(p)),
                (None, h, Some(port), None) => SockAddr::Tcp {
                    host: h.unwrap_or_default(),
                    port,
                },
                (None, None, None, Some(fd)) => SockAddr::Fd(fd),
                _ => bail!(
                    "{opt}: a socket chardev needs exactly one of path=, port= (with host=) or fd="
                ),
            };
            Backend::Socket(sock)
        }
        "" => bail!("-chardev: missing backend (stdio, file, socket, null)"),
        other => {
            bail!(
                "{opt}: the {other} backend is not supported (hx86 has stdio, file, socket, null)"
            )
        }
    };
    Ok(ChardevSpec { id, backend, mux })
}

/// A device named the short way (`-serial DEV`, `-qmp DEV`, `-monitor
/// DEV`): `stdio`, `null`, `file:PATH`, `unix:PATH[,server...]`,
/// `tcp:[HOST]:PORT[,server...]`. `None` for `none`.
pub fn parse_dev(opt: &str, dev: &str) -> Result<Option<Backend>> {
    let optname = format!("{opt} {dev}");
    Ok(Some(match dev {
        "none" => return Ok(None),
        "null" => Backend::Null,
        "stdio" => Backend::Stdio,
        _ => {
            if let Some(p) = dev.strip_prefix("file:") {
                if p.is_empty() {
                    bail!("{optname}: file: needs a path");
                }
                Backend::File(PathBuf::from(p))
            } else if let Some(rest) = dev
                .strip_prefix("unix:")
                .map(|r| (r, true))
                .or_else(|| dev.strip_prefix("tcp:").map(|r| (r, false)))
            {
                let (rest, unix) = rest;
                let mut props = split_props(rest).into_iter();
                let (addr, _) = props.next().unwrap_or_default();
                let addr = if unix {
                    if addr.is_empty() {
                        bail!("{optname}: unix: needs a path");
                    }
                    SockAddr::Unix(PathBuf::from(addr))
                } else {
                    let (h, p) = addr
                        .rsplit_once(':')
                        .with_context(|| format!("{optname}: expected tcp:[HOST]:PORT"))?;
                    SockAddr::Tcp {
                        host: h.trim_start_matches('[').trim_end_matches(']').to_string(),
                        port: parse_port(&optname, p)?,
                    }
                };
                let mut s = SocketOpts {
                    addr,
                    server: false,
                    wait: true,
                };
                for (k, v) in props {
                    if !socket_prop(&optname, &mut s, &k, v.as_deref())? {
                        bail!("{optname}: unknown socket property '{k}'");
                    }
                }
                Backend::Socket(s)
            } else if dev.starts_with("chardev:") || dev.starts_with("mon:") {
                bail!("{optname}: not allowed here");
            } else {
                bail!("{optname}: unsupported device (use stdio, null, none, file:PATH, unix:PATH[,server=on,wait=off], tcp:[HOST]:PORT[,server=on,wait=off] or chardev:ID)")
            }
        }
    }))
}

/// `-mon chardev=ID[,mode=control|readline][,pretty=on|off]`.
pub fn parse_mon(spec: &str) -> Result<MonitorSpec> {
    let opt = format!("-mon {spec}");
    let mut chardev = None;
    let mut mode = MonitorMode::Readline;
    let mut pretty = false;
    for (k, v) in split_props(spec) {
        match (k.as_str(), v.as_deref()) {
            ("chardev", Some(id)) => chardev = Some(id.to_string()),
            ("mode", Some("control")) => mode = MonitorMode::Control,
            ("mode", Some("readline")) => mode = MonitorMode::Readline,
            ("mode", Some(m)) => bail!("{opt}: mode={m}: use control or readline"),
            ("pretty", v) => pretty = on_off(&opt, "pretty", v)?,
            ("default", _) | ("id", Some(_)) => {}
            (k, _) => bail!("{opt}: unknown property '{k}'"),
        }
    }
    let chardev = chardev.with_context(|| format!("{opt}: needs chardev=ID"))?;
    Ok(MonitorSpec {
        chardev,
        mode,
        pretty,
    })
}

impl ChardevConfig {
    fn add_compat(&mut self, backend: Backend, mux: bool) -> String {
        let id = format!("compat_monitor{}", self.chardevs.len());
        self.chardevs.push(ChardevSpec {
            id: id.clone(),
            backend,
            mux,
        });
        id
    }

    /// Builds the configuration from the options, checking that every
    /// name resolves and that a chardev with several users is a mux.
    pub fn from_options(o: &ChardevOptions<'_>) -> Result<ChardevConfig> {
        let mut c = ChardevConfig::default();
        for s in o.chardev {
            let spec = parse_chardev(s)?;
            if c.chardevs.iter().any(|d| d.id == spec.id) {
                bail!("-chardev {s}: duplicate chardev id '{}'", spec.id);
            }
            c.chardevs.push(spec);
        }
        for m in o.mon {
            c.monitors.push(parse_mon(m)?);
        }
        for q in o.qmp {
            if let Some(b) = parse_dev("-qmp", q)? {
                let id = c.add_compat(b, false);
                c.monitors.push(MonitorSpec {
                    chardev: id,
                    mode: MonitorMode::Control,
                    pretty: false,
                });
            }
        }
        for m in o.monitor {
            let (dev, _mux) = match m.strip_prefix("mon:") {
                Some(d) => (d, true),
                None => (m.as_str(), false),
            };
            if let Some(id) = dev.strip_prefix("chardev:") {
                c.monitors.push(MonitorSpec {
                    chardev: id.to_string(),
                    mode: MonitorMode::Readline,
                    pretty: false,
                });
            } else if let Some(b) = parse_dev("-monitor", dev)? {
                let id = c.add_compat(b, false);
                c.monitors.push(MonitorSpec {
                    chardev: id,
                    mode: MonitorMode::Readline,
                    pretty: false,
                });
            }
        }
        let serial = o.serial;
        if let Some(id) = serial.strip_prefix("chardev:") {
            c.serial = Some(id.to_string());
        } else if let Some(dev) = serial.strip_prefix("mon:") {
            let b = parse_dev("-serial", dev)?
                .with_context(|| format!("-serial {serial}: mon: needs a device"))?;
            let id = c.add_compat(b, true);
            c.serial = Some(id.clone());
            c.monitors.push(MonitorSpec {
                chardev: id,
                mode: MonitorMode::Readline,
                pretty: false,
            });
        } else if let Some(b) = parse_dev("-serial", serial)? {
            let id = format!("serial{}", c.chardevs.len());
            c.chardevs.push(ChardevSpec {
                id: id.clone(),
                backend: b,
                mux: false,
            });
            c.serial = Some(id);
        }
        c.check()?;
        Ok(c)
    }

    fn check(&self) -> Result<()> {
        let mut users: Vec<(&str, usize)> = Vec::new();
        let names = self
            .serial
            .iter()
            .map(|s| ("-serial", s.as_str()))
            .chain(self.monitors.iter().map(|m| ("-mon", m.chardev.as_str())));
        for (who, id) in names {
            let Some(d) = self.chardevs.iter().find(|d| d.id == id) else {
                bail!("{who}: chardev '{id}' not found (define it with -chardev ...,id={id})");
            };
            match users.iter_mut().find(|(n, _)| *n == id) {
                Some((_, n)) => {
                    *n += 1;
                    if !d.mux {
                        bail!("chardev '{id}' is used twice: add mux=on to share it");
                    }
                }
                None => users.push((id, 1)),
            }
        }
        let stdio = self
            .chardevs
            .iter()
            .filter(|d| d.backend == Backend::Stdio)
            .count();
        if stdio > 1 {
            bail!("stdio is used by more than one chardev (share it with mon:stdio or mux=on)");
        }
        for m in &self.monitors {
            let d = self.chardevs.iter().find(|d| d.id == m.chardev);
            if m.mode == MonitorMode::Control && d.is_some_and(|d| d.mux) {
                bail!(
                    "chardev '{}': a QMP monitor cannot share a mux chardev in hx86",
                    m.chardev
                );
            }
        }
        Ok(())
    }

    /// Whether any monitor is configured (then `-S` can be continued).
    pub fn has_monitor(&self) -> bool {
        !self.monitors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(serial: &str, chardev: &[&str], mon: &[&str], qmp: &[&str]) -> Result<ChardevConfig> {
        let chardev: Vec<String> = chardev.iter().map(|s| s.to_string()).collect();
        let mon: Vec<String> = mon.iter().map(|s| s.to_string()).collect();
        let qmp: Vec<String> = qmp.iter().map(|s| s.to_string()).collect();
        ChardevConfig::from_options(&ChardevOptions {
            chardev: &chardev,
            serial,
            mon: &mon,
            qmp: &qmp,
            monitor: &[],
        })
    }

    #[test]
    fn socket_chardevs_old_and_new_flags() {
        let s = parse_chardev("socket,id=m,path=/tmp/q.sock,server=on,wait=off").unwrap();
        assert_eq!(
            s.backend,
            Backend::Socket(SocketOpts {
                addr: SockAddr::Unix("/tmp/q.sock".into()),
                server: true,
                wait: false
            })
        );
        let s = parse_chardev("socket,id=m,host=127.0.0.1,port=4444,server,nowait").unwrap();
        assert_eq!(
            s.backend,
            Backend::Socket(SocketOpts {
                addr: SockAddr::Tcp {
                    host: "127.0.0.1".into(),
                    port: 4444
                },
                server: true,
                wait: false
            })
        );
        assert_eq!(
            parse_dev("-qmp", "tcp::4444,server,nowait").unwrap(),
            Some(Backend::Socket(SocketOpts {
                addr: SockAddr::Tcp {
                    host: String::new(),
                    port: 4444
                },
                server: true,
                wait: false
            }))
        );
        assert!(parse_chardev("socket,id=m").is_err());
        assert!(parse_chardev("socket,path=/x").is_err());
        assert!(parse_chardev("pty,id=x").is_err());
        assert!(parse_chardev("socket,id=m,path=/x,server=maybe").is_err());
        assert!(parse_dev("-serial", "vc").is_err());
    }

    #[test]
    fn users_resolve_and_share_only_muxes() {
        let c = cfg(
            "chardev:s",
            &["stdio,id=s,mux=on"],
            &["chardev=s,mode=readline"],
            &["unix:/tmp/x,server=on,wait=off"],
        )
        .unwrap();
        assert_eq!(c.serial.as_deref(), Some("s"));
        assert_eq!(c.monitors.len(), 2);
        assert!(cfg("chardev:nope", &[], &[], &[]).is_err());
        assert!(cfg("chardev:s", &["stdio,id=s"], &["chardev=s"], &[]).is_err());
        assert!(cfg("stdio", &[], &[], &["stdio"]).is_err());
        let c = cfg("mon:stdio", &[], &[], &[]).unwrap();
        assert_eq!(c.monitors[0].mode, MonitorMode::Readline);
        assert!(c.chardevs[0].mux);
        let c = cfg("none", &[], &[], &[]).unwrap();
        assert!(c.serial.is_none());
    }
}
