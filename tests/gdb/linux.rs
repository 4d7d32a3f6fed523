//! gdb against Debian's kernel on two vCPUs (the guest of
//! `tests/common/linux.rs`): a debugger attaches to the running kernel,
//! sees both CPUs in long mode at kernel addresses, reads one CPU's
//! registers, detaches, and the kernel runs on to a clean power-off.

use std::io::Write;

use super::*;
use common::linux::{guest, tail_of, BOOT_TIMEOUT};

#[test]
fn debian_linux_on_2_vcpus_under_gdb_threads_then_detach() {
    if !gdb_available() {
        return;
    }
    let Some(g) = guest() else { return };
    let dir = scratch("gdb-linux");
    let sock = dir.join("gdb.sock");
    let mut child = hx86()
        .args(["-accel", "dbt", "-smp", "2", "-m", "512M", "-kernel"])
        .arg(g.dir.join("vmlinuz"))
        .arg("-initrd")
        .arg(g.dir.join("initrd.gz"))
        .args(["-append", "console=ttyS0 quiet panic=-1", "-no-reboot"])
        .arg("-gdb")
        .arg(format!("unix:{}", sock.display()))
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn hx86");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let (tx, rx) = channel::<Vec<u8>>();
    std::thread::spawn(move || {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 || tx.send(buf[..n].to_vec()).is_err() {
                return;
            }
        }
    });
    let mut out = Vec::new();
    let wait_for = |what: &str, out: &mut Vec<u8>, child: &mut Child| {
        let start = Instant::now();
        while !String::from_utf8_lossy(out).contains(what) {
            if let Ok(c) = rx.recv_timeout(Duration::from_millis(100)) {
                out.extend_from_slice(&c);
            }
            if start.elapsed() > BOOT_TIMEOUT || child.try_wait().unwrap().is_some() {
                let _ = child.kill();
                panic!("no {what:?}\n{}", tail_of(&String::from_utf8_lossy(out)));
            }
        }
    };
    wait_for("HX86-GUEST-READY", &mut out, &mut child);
    // The kernel mostly idles on both CPUs when gdb attaches (the shell
    // may still be starting on one).
    let gdb_out = Command::new("gdb")
        .args(["-nx", "-batch", "-ex"])
        .arg(format!("target remote {}", sock.display()))
        .args([
            "-ex",
            "echo ==threads\\n",
            "-ex",
            "info threads",
            "-ex",
            "thread 2",
            "-ex",
            "echo ==cpu1\\n",
            "-ex",
            "p/x $pc",
            "-ex",
            "p/x $cs",
            "-ex",
            "p/x $cr3",
            "-ex",
            "thread 1",
            "-ex",
            "p/x $cr3",
            "-ex",
            "echo ==detach\\n",
            "-ex",
            "detach",
        ])
        .stdin(Stdio::null())
        .output()
        .expect("run gdb");
    let gdb_out = format!(
        "{}{}",
        String::from_utf8_lossy(&gdb_out.stdout),
        String::from_utf8_lossy(&gdb_out.stderr)
    );
    // The guest runs on after the debugger left.
    stdin
        .write_all(b"echo ALIVE-$((40+2))\npoweroff -f\n")
        .unwrap();
    wait_for("ALIVE-42", &mut out, &mut child);
    let status = wait_exit(&mut child, BOOT_TIMEOUT);
    drop(stdin);
    let ctx = format!(
        "{gdb_out}\n--- console ---\n{}",
        tail_of(&String::from_utf8_lossy(&out))
    );
    no_protocol_errors(&gdb_out, &ctx);
    let threads = &gdb_out[gdb_out.find("==threads").unwrap()..];
    assert!(
        threads.contains("Thread 1.1 (CPU#0 [64-bit long mode"),
        "{ctx}"
    );
    assert!(
        threads.contains("Thread 1.2 (CPU#1 [64-bit long mode"),
        "{ctx}"
    );
    // CPU#1 stopped in the kernel (its text is mapped at the top 2 GiB) or,
    // at CPL 3, in a user process (the shell starting up on a loaded
    // host): its PC matches its privilege level; it has page tables.
    let vals = printed_hex(&gdb_out[gdb_out.find("==cpu1").unwrap()..]);
    assert_eq!(vals.len(), 4, "{ctx}");
    let (pc, code_sel, page_tables) = (vals[0], vals[1], vals[2]);
    match code_sel & 3 {
        0 => assert!(pc >= 0xffff_ffff_8000_0000, "{ctx}"),
        _ => assert!(pc < 0x0000_8000_0000_0000, "{ctx}"),
    }
    assert!(page_tables != 0, "{ctx}");
    assert!(
        gdb_out.contains("[Inferior 1 (process 1) detached]"),
        "{ctx}"
    );
    assert_eq!(status, Some(0), "{ctx}");
}
