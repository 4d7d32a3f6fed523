//! QMP and HMP end to end: the real python client (`qemu.qmp` from PyPI,
//! installed by `.ci/run` in a virtualenv) drives the hx86 binary through
//! the scripts in `tests/qmp/`; raw sockets send malformed and hostile
//! input; the human monitor runs on stdio and behind `-serial mon:stdio`.
//!
//! Without the python client the client tests print why and skip, unless
//! HX86_REQUIRE_QMP=1 (set by .ci/run) makes that a failure.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use common::qmp::{python, script};
use common::*;
use iced_x86::code_asm::*;

/// Where the counting guest keeps its counter.
const COUNTER: u64 = 0x5000;

/// An ELF32 kernel that counts in memory at [`COUNTER`] for ever and
/// prints a dot on COM1 every 65536 counts.
fn counting_guest(dir: &Path) -> String {
    let mut a = CodeAssembler::new(32).unwrap();
    let mut top = a.create_label();
    (|| -> Result<(), IcedError> {
        a.mov(edi, COUNTER as u32)?;
        a.mov(dword_ptr(edi), 0u32)?;
        a.set_label(&mut top)?;
        a.inc(dword_ptr(edi))?;
        a.test(dword_ptr(edi), 0xffffu32)?;
        a.jnz(top)?;
        a.mov(dx, 0x3f8u32)?;
        a.mov(al, b'.' as u32)?;
        a.out(dx, al)?;
        a.jmp(top)
    })()
    .unwrap();
    let code = a.assemble(0x10_0000).unwrap();
    write(dir, "count.elf", &elf(false, 0x10_0000, &code))
}

/// Waits for a unix socket to accept connections.
fn wait_for_socket(path: &Path, child: &mut Child) {
    let start = Instant::now();
    while UnixStream::connect(path).is_err() {
        if let Ok(Some(st)) = child.try_wait() {
            panic!("hx86 exited early: {st}");
        }
        assert!(
            start.elapsed() < Duration::from_secs(60),
            "no QMP socket at {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn spawn_counting(dir: &Path, sock: &Path, extra: &[&str]) -> Child {
    let kernel = counting_guest(dir);
    hx86()
        .args(["-accel", "dbt", "-kernel", &kernel, "-serial"])
        .arg(format!("file:{}", dir.join("serial.txt").display()))
        .arg("-qmp")
        .arg(format!("unix:{},server=on,wait=off", sock.display()))
        .args(extra)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn hx86")
}

#[test]
fn qemu_qmp_client_stops_continues_resets_and_quits() {
    let Some(py) = python() else { return };
    let dir = scratch("qmp-control");
    let sock = dir.join("qmp.sock");
    let mut child = spawn_counting(&dir, &sock, &[]);
    wait_for_socket(&sock, &mut child);
    let out = script(
        &py,
        "control.py",
        &[sock.to_str().unwrap(), &COUNTER.to_string()],
        Duration::from_secs(300),
    );
    assert!(out.contains("OK"), "{out}");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0));
    let serial = std::fs::read_to_string(dir.join("serial.txt")).unwrap();
    assert!(
        serial.contains('.'),
        "the guest printed nothing: {serial:?}"
    );
}

/// `-smp 2`: query-cpus-fast names each vCPU's own host thread.
#[test]
fn query_cpus_fast_reports_each_vcpus_thread() {
    let Some(py) = python() else { return };
    let dir = scratch("qmp-cpus-smp");
    let sock = dir.join("qmp.sock");
    let mut child = spawn_counting(&dir, &sock, &["-smp", "2"]);
    wait_for_socket(&sock, &mut child);
    let out = script(
        &py,
        "cpus_smp.py",
        &[sock.to_str().unwrap(), &child.id().to_string()],
        Duration::from_secs(120),
    );
    assert!(out.contains("OK"), "{out}");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0));
}

#[test]
fn dash_capital_s_waits_in_prelaunch_until_cont() {
    let Some(py) = python() else { return };
    let dir = scratch("qmp-prelaunch");
    let sock = dir.join("qmp.sock");
    let mut child = spawn_counting(&dir, &sock, &["-S"]);
    wait_for_socket(&sock, &mut child);
    let out = script(
        &py,
        "control.py",
        &[sock.to_str().unwrap(), &COUNTER.to_string(), "prelaunch"],
        Duration::from_secs(300),
    );
    assert!(out.contains("prelaunch"), "{out}");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0));
}

/// A raw QMP connection: reads one reply line at a time.
struct Raw {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

impl Raw {
    fn connect(path: &Path) -> Raw {
        let s = UnixStream::connect(path).unwrap();
        s.set_read_timeout(Some(Duration::from_secs(60))).unwrap();
        Raw {
            r: BufReader::new(s.try_clone().unwrap()),
            w: s,
        }
    }
    fn line(&mut self) -> String {
        let mut l = String::new();
        self.r.read_line(&mut l).expect("a reply line");
        l
    }
    fn send(&mut self, b: &[u8]) {
        self.w.write_all(b).unwrap();
    }
    /// The next line that is not an event.
    fn reply(&mut self) -> String {
        loop {
            let l = self.line();
            if !l.contains("\"event\"") {
                return l;
            }
        }
    }
}

#[test]
fn malformed_and_hostile_qmp_input_never_stops_the_guest() {
    let dir = scratch("qmp-hostile");
    let sock = dir.join("qmp.sock");
    let mut child = spawn_counting(&dir, &sock, &[]);
    wait_for_socket(&sock, &mut child);

    let mut c = Raw::connect(&sock);
    assert!(c.line().contains("\"QMP\""));
    // Before negotiation.
    c.send(b"{\"execute\": \"query-status\", \"id\": 7}");
    let r = c.reply();
    assert!(
        r.contains("CommandNotFound") && r.contains("\"id\":7"),
        "{r}"
    );
    // Back to back, single quotes, no newlines.
    c.send(b"{'execute':'qmp_capabilities'}{\"execute\":\"query-status\",\"id\":\"a'b\"}");
    assert!(c.reply().contains("\"return\":{}"));
    let r = c.reply();
    assert!(
        r.contains("\"running\"") && r.contains("\"id\":\"a'b\""),
        "{r}"
    );
    // Shapes QEMU refuses, each with its error.
    for (input, want) in [
        (&b"[1, 2]"[..], "must be a JSON object"),
        (b"{\"arguments\": {}}", "lacks member 'execute'"),
        (b"{\"execute\": 42}", "'execute' must be a string"),
        (
            b"{\"execute\": \"stop\", \"arguments\": 1}",
            "'arguments' must be an object",
        ),
        (
            b"{\"execute\": \"stop\", \"arguments\": {\"x\": 1}}",
            "Parameter 'x' is unexpected",
        ),
        (
            b"{\"execute\": \"stop\", \"bogus\": 1}",
            "'bogus' is unexpected",
        ),
        (
            b"{\"execute\": \"frobnicate\", \"id\": [1]}",
            "CommandNotFound",
        ),
        (b"{\"execute\": \"qmp_capabilities\"}", "already complete"),
        (b"{\"execute\": \"query-status\",}", "JSON parse error"),
        (b"garbage\n", "JSON parse error"),
    ] {
        c.send(input);
        let r = c.reply();
        assert!(
            r.contains("\"error\"") && r.contains(want),
            "{}: {r}",
            String::from_utf8_lossy(input)
        );
    }
    // Deep nesting, a huge string, binary noise: errors, never a crash.
    c.send(&b"[".repeat(200_000));
    c.send(&b"]".repeat(200_000));
    assert!(c.reply().contains("nesting"));
    let mut big = b"{\"execute\": \"".to_vec();
    big.extend(std::iter::repeat_n(b'x', 3 << 20));
    big.extend(b"\"}");
    c.send(&big);
    assert!(c.reply().contains("longer than"));
    let noise: Vec<u8> = (0..100_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 24) as u8)
        .filter(|b| !b"{}[]\"'\xff".contains(b))
        .collect();
    c.send(&noise);
    c.send(b"\xff{\"execute\": \"query-status\", \"id\": \"after\"}");
    let r = loop {
        let r = c.reply();
        if r.contains("\"after\"") {
            break r;
        }
        assert!(r.contains("\"error\""), "{r}");
    };
    assert!(r.contains("\"status\":\"running\""), "{r}");
    // An unterminated string, then the client goes away; a new client
    // finds the guest still running.
    c.send(b"{\"execute\": \"stop");
    drop(c);
    let mut d = Raw::connect(&sock);
    assert!(d.line().contains("\"QMP\""));
    d.send(b"{\"execute\":\"qmp_capabilities\"}{\"execute\":\"human-monitor-command\",\"arguments\":{\"command-line\":\"info status\"}}");
    assert!(d.reply().contains("return"));
    let r = d.reply();
    assert!(r.contains("VM status: running"), "{r}");
    d.send(b"{\"execute\":\"quit\"}");
    assert!(d.reply().contains("return"));
    let ev = d.line();
    assert!(
        ev.contains("SHUTDOWN") && ev.contains("host-qmp-quit"),
        "{ev}"
    );
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0));
}

#[test]
fn human_monitor_on_stdio_and_behind_serial_mon_stdio() {
    let dir = scratch("hmp-stdio");
    let kernel = counting_guest(&dir);
    // -monitor stdio: commands from a pipe, the guest's serial to a file.
    let serial = format!("file:{}", dir.join("serial.txt").display());
    let o = run_input(
        &[
            "-accel", "dbt", "-kernel", &kernel, "-serial", &serial, "-monitor", "stdio",
        ],
        Some(b"stop\ninfo status\nxp /1wx 0x5000\ngva2gpa 0x5000\ninfo cpus\nq\n"),
        Duration::from_secs(120),
    );
    assert_eq!(o.status, Some(0), "{}", o.dump());
    for want in [
        "(qemu) ",
        "VM status: paused",
        "0000000000005000: 0x",
        "gpa: 0x5000",
        "* CPU #0: thread_id=",
    ] {
        assert!(o.stdout.contains(want), "missing {want:?}\n{}", o.dump());
    }
    // -serial mon:stdio: the guest's dots first; Ctrl-A c gives the
    // monitor the input.
    let o = run_input(
        &["-accel", "dbt", "-kernel", &kernel, "-serial", "mon:stdio"],
        Some(b"\x01cinfo status\nquit\n"),
        Duration::from_secs(120),
    );
    assert_eq!(o.status, Some(0), "{}", o.dump());
    assert!(o.stdout.contains("VM status: running"), "{}", o.dump());
    assert!(o.stdout.contains("(qemu) "), "{}", o.dump());
}

/// A debugger holds the CPU (`-S`, gdb attached and waiting): monitor
/// jobs still run on the vCPU thread and `quit` ends hx86 without the
/// debugger doing anything.
#[test]
fn monitors_work_while_a_debugger_holds_the_cpu() {
    let Some(py) = python() else { return };
    if std::process::Command::new("gdb")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("note: skipping: no gdb");
        return;
    }
    let dir = scratch("qmp-gdb");
    let sock = dir.join("qmp.sock");
    let gdb_sock = dir.join("gdb.sock");
    let gdb_dev = format!("unix:{}", gdb_sock.display());
    let mut child = spawn_counting(&dir, &sock, &["-S", "-gdb", &gdb_dev]);
    wait_for_socket(&sock, &mut child);
    // gdb attaches, then waits on its stdin (a line or EOF ends it).
    let mut gdb = std::process::Command::new("gdb")
        .args(["-q", "-nx", "-batch", "-ex"])
        .arg(format!("target remote {}", gdb_sock.display()))
        .args(["-ex", "echo ATTACHED\\n", "-ex", "shell read x"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn gdb");
    let mut out = BufReader::new(gdb.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("ATTACHED") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "gdb ended before attaching"
        );
    }
    let r = script(
        &py,
        "debugger_held.py",
        &[sock.to_str().unwrap()],
        Duration::from_secs(300),
    );
    assert!(r.contains("OK"), "{r}");
    assert_eq!(wait_exit(&mut child, Duration::from_secs(60)), Some(0));
    drop(gdb.stdin.take());
    let _ = wait_exit(&mut gdb, Duration::from_secs(60));
}
