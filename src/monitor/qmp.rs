//! QMP, the JSON machine protocol, as QEMU 7.2 speaks it: the greeting,
//! capabilities negotiation, commands with their `id` echoed, errors with
//! `class` and `desc`, and events with timestamps.
//!
//! One [`Qmp`] serves one chardev. Replies and events go through a bounded
//! queue to a writer thread per connection, so a client that does not
//! read can never block a vCPU (it is dropped when its queue is full).

use std::sync::atomic::Ordering;
use std::sync::mpsc::{sync_channel, SyncSender, TrySendError};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};

use super::json::{Item, Splitter};
use super::{hmp, MonitorTarget, PENDING};
use crate::chardev::backend::{Frontend, Output};
use crate::control::{Cause, Control, Event};

/// The QEMU release whose interface this follows.
pub const QEMU_VERSION: (u32, u32, u32) = (7, 2, 0);

/// Messages a connection may have queued before it is dropped.
const QUEUE: usize = 4096;

/// Every command, as `query-commands` lists them.
const COMMANDS: &[&str] = &[
    "qmp_capabilities",
    "query-version",
    "query-status",
    "query-commands",
    "query-cpus-fast",
    "query-kvm",
    "query-name",
    "stop",
    "cont",
    "system_reset",
    "system_powerdown",
    "quit",
    "human-monitor-command",
];

pub fn version_json() -> Value {
    let (major, minor, micro) = QEMU_VERSION;
    json!({
        "qemu": {"major": major, "minor": minor, "micro": micro},
        "package": format!("hx86 {}", env!("CARGO_PKG_VERSION")),
    })
}

struct Conn {
    tx: SyncSender<Vec<u8>>,
    negotiated: bool,
}

/// A QMP monitor on one chardev.
pub struct Qmp {
    ctl: Arc<Control>,
    target: MonitorTarget,
    out: Arc<Output>,
    pretty: bool,
    conn: Mutex<Option<Conn>>,
    splitter: Mutex<Splitter>,
}

/// A command's error: QEMU's class and description.
struct QmpError {
    class: &'static str,
    desc: String,
}

fn generic(desc: impl Into<String>) -> QmpError {
    QmpError {
        class: "GenericError",
        desc: desc.into(),
    }
}

/// What a command asks for once its reply is queued.
enum After {
    Nothing,
    Quit,
}

fn timestamp() -> Value {
    let d = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    json!({"seconds": d.as_secs(), "microseconds": d.subsec_micros()})
}

pub fn event_json(ev: &Event) -> Value {
    let (name, data) = match ev {
        Event::Stop => ("STOP", None),
        Event::Resume => ("RESUME", None),
        Event::Powerdown => ("POWERDOWN", None),
        Event::Reset(c) => ("RESET", Some(c)),
        Event::Shutdown(c) => ("SHUTDOWN", Some(c)),
    };
    let mut m = Map::new();
    m.insert("timestamp".into(), timestamp());
    m.insert("event".into(), json!(name));
    if let Some(c) = data {
        m.insert(
            "data".into(),
            json!({"guest": c.guest(), "reason": c.as_str()}),
        );
    }
    Value::Object(m)
}

impl Qmp {
    pub fn new(
        ctl: Arc<Control>,
        target: MonitorTarget,
        out: Arc<Output>,
        pretty: bool,
    ) -> Arc<Qmp> {
        let q = Arc::new(Qmp {
            ctl: ctl.clone(),
            target,
            out,
            pretty,
            conn: Mutex::new(None),
            splitter: Mutex::new(Splitter::new()),
        });
        let weak: Weak<Qmp> = Arc::downgrade(&q);
        ctl.subscribe(move |ev| {
            if let Some(q) = weak.upgrade() {
                q.send_event(ev);
            }
        });
        q
    }

    fn encode(&self, v: &Value) -> Vec<u8> {
        let mut s = if self.pretty {
            serde_json::to_string_pretty(v)
        } else {
            serde_json::to_string(v)
        }
        .unwrap_or_default();
        s.push_str("\r\n");
        s.into_bytes()
    }

    /// Queues `v` for the current connection (when `negotiated_only`, only
    /// once capabilities were negotiated). A full queue drops the client.
    fn send(&self, v: &Value, negotiated_only: bool) {
        let mut c = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let Some(conn) = c.as_ref() else { return };
        if negotiated_only && !conn.negotiated {
            return;
        }
        PENDING.fetch_add(1, Ordering::SeqCst);
        match conn.tx.try_send(self.encode(v)) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                PENDING.fetch_sub(1, Ordering::SeqCst);
                log::warn!(target: "unimp", "QMP: a client stopped reading: dropped");
                *c = None;
            }
        }
    }

    fn send_event(&self, ev: &Event) {
        self.send(&event_json(ev), true);
    }

    fn set_negotiated(&self) {
        if let Some(c) = self.conn.lock().unwrap_or_else(|e| e.into_inner()).as_mut() {
            c.negotiated = true;
        }
    }

    fn negotiated(&self) -> bool {
        self.conn
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .as_ref()
            .is_some_and(|c| c.negotiated)
    }

    fn handle(&self, item: Item) {
        let v = match item {
            Item::Value(v) => v,
            Item::Error(desc) => {
                self.send(
                    &json!({"error": {"class": "GenericError", "desc": desc}}),
                    false,
                );
                return;
            }
        };
        let id = v.get("id").cloned();
        let (reply, after) = match self.request(v) {
            Ok((ret, after)) => (json!({ "return": ret }), after),
            Err(e) => (
                json!({"error": {"class": e.class, "desc": e.desc}}),
                After::Nothing,
            ),
        };
        let mut reply = reply;
        if let (Some(id), Some(m)) = (id, reply.as_object_mut()) {
            m.insert("id".into(), id);
        }
        self.send(&reply, false);
        match after {
            After::Nothing => {}
            After::Quit => self.ctl.quit(0, Cause::HostQmpQuit),
        }
    }

    /// Checks the request's shape and runs it.
    fn request(&self, v: Value) -> Result<(Value, After), QmpError> {
        let Value::Object(m) = v else {
            return Err(generic("QMP input must be a JSON object"));
        };
        let mut name = None;
        let mut args = Map::new();
        for (k, val) in m {
            match k.as_str() {
                "execute" => match val {
                    Value::String(s) => name = Some(s),
                    _ => return Err(generic("QMP input member 'execute' must be a string")),
                },
                "arguments" => match val {
                    Value::Object(a) => args = a,
                    _ => return Err(generic("QMP input member 'arguments' must be an object")),
                },
                "id" => {}
                "exec-oob" => {
                    return Err(generic("QMP input member 'exec-oob' is unexpected"));
                }
                other => return Err(generic(format!("QMP input member '{other}' is unexpected"))),
            }
        }
        let name = name.ok_or_else(|| generic("QMP input lacks member 'execute'"))?;
        let negotiated = self.negotiated();
        if name == "qmp_capabilities" {
            if negotiated {
                return Err(QmpError {
                    class: "CommandNotFound",
                    desc: "Capabilities negotiation is already complete, command ignored".into(),
                });
            }
            if let Some((k, v)) = args.iter().next() {
                match (k.as_str(), v) {
                    ("enable", Value::Array(a)) if a.is_empty() => {}
                    ("enable", Value::Array(a)) => {
                        return Err(generic(format!(
                            "Capability '{}' not available",
                            a[0].as_str().unwrap_or("?")
                        )))
                    }
                    _ => return Err(generic(format!("Parameter '{k}' is unexpected"))),
                }
            }
            self.set_negotiated();
            return Ok((json!({}), After::Nothing));
        }
        if !negotiated {
            return Err(QmpError {
                class: "CommandNotFound",
                desc: "Expecting capabilities negotiation with 'qmp_capabilities'".into(),
            });
        }
        self.command(&name, args)
    }

    fn command(
        &self,
        name: &str,
        mut args: Map<String, Value>,
    ) -> Result<(Value, After), QmpError> {
        let known = COMMANDS.contains(&name);
        if !known {
            return Err(QmpError {
                class: "CommandNotFound",
                desc: format!("The command {name} has not been found"),
            });
        }
        // Arguments: the HMP command takes two, the others none.
        let (line, cpu) = if name == "human-monitor-command" {
            let line = match args.remove("command-line") {
                Some(Value::String(s)) => s,
                Some(_) => {
                    return Err(generic(
                        "Invalid parameter type for 'command-line', expected: string",
                    ))
                }
                None => return Err(generic("Parameter 'command-line' is missing")),
            };
            let cpu = match args.remove("cpu-index") {
                None => 0,
                Some(v) => match v.as_u64() {
                    Some(n) => n as usize,
                    None => {
                        return Err(generic(
                            "Invalid parameter type for 'cpu-index', expected: integer",
                        ))
                    }
                },
            };
            (line, cpu)
        } else {
            (String::new(), 0)
        };
        if let Some(k) = args.keys().next() {
            return Err(generic(format!("Parameter '{k}' is unexpected")));
        }
        let ok = |v: Value| Ok((v, After::Nothing));
        let ctl = &self.ctl;
        match name {
            "query-version" => ok(version_json()),
            "query-status" => {
                let st = ctl.state();
                ok(json!({
                    "status": st.as_str(),
                    "singlestep": false,
                    "running": st == crate::control::RunState::Running,
                }))
            }
            "query-commands" => ok(Value::Array(
                COMMANDS.iter().map(|c| json!({ "name": c })).collect(),
            )),
            "query-cpus-fast" => ok(Value::Array(
                ctl.vcpus()
                    .into_iter()
                    .map(|(i, tid)| {
                        json!({
                            "cpu-index": i,
                            "qom-path": format!("/machine/unattached/device[{i}]"),
                            "thread-id": tid,
                            "props": {"core-id": 0, "thread-id": 0, "socket-id": i},
                            "target": "x86_64",
                        })
                    })
                    .collect(),
            )),
            "query-kvm" => {
                let kvm = ctl.accel() == "kvm";
                ok(json!({ "enabled": kvm, "present": kvm || kvm_present() }))
            }
            "query-name" => ok(json!({})),
            "stop" => {
                ctl.stop();
                ok(json!({}))
            }
            "cont" => match ctl.cont() {
                Ok(()) => ok(json!({})),
                Err(e) => Err(generic(e.to_string())),
            },
            "system_reset" => match ctl.system_reset() {
                Ok(()) => ok(json!({})),
                Err(e) => Err(generic(e.to_string())),
            },
            "system_powerdown" => match ctl.system_powerdown() {
                Ok(()) => ok(json!({})),
                Err(e) => Err(generic(e.to_string())),
            },
            "quit" => Ok((json!({}), After::Quit)),
            "human-monitor-command" => {
                let mut t = self.target.clone();
                t.cpu = cpu;
                let text = hmp::execute(&mut t, &line);
                ok(Value::String(text))
            }
            _ => Err(QmpError {
                class: "CommandNotFound",
                desc: format!("The command {name} has not been found"),
            }),
        }
    }
}

fn kvm_present() -> bool {
    std::fs::metadata("/dev/kvm").is_ok()
}

impl Frontend for Qmp {
    fn open(&self) {
        let (tx, rx) = sync_channel::<Vec<u8>>(QUEUE);
        let out = self.out.clone();
        let gen = out.generation();
        let spawned = std::thread::Builder::new()
            .name("qmp writer".into())
            .spawn(move || {
                let mut alive = true;
                while let Ok(msg) = rx.recv() {
                    if alive {
                        alive = out.write_to(Some(gen), &msg);
                    }
                    PENDING.fetch_sub(1, Ordering::SeqCst);
                }
            });
        if spawned.is_err() {
            return;
        }
        *self.splitter.lock().unwrap_or_else(|e| e.into_inner()) = Splitter::new();
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = Some(Conn {
            tx,
            negotiated: false,
        });
        let greeting = json!({"QMP": {"version": version_json(), "capabilities": []}});
        self.send(&greeting, false);
    }

    fn input(&self, data: &[u8]) {
        let items = self
            .splitter
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(data);
        for item in items {
            self.handle(item);
        }
    }

    fn close(&self) {
        *self.conn.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// How long [`super::flush`] waits for slow clients at exit.
pub const FLUSH_TIMEOUT: Duration = Duration::from_secs(2);
