//! gdb against a machine with several vCPUs (`-smp 2`, the SMP test ROM of
//! `firmware::smp`, under every usable accelerator): one gdb thread per
//! vCPU, all-stop.
//! The application processor starts in real mode at 0xA000 and runs
//! 32-bit code from 0xA040 (`firmware/src/smp.rs`).

use super::*;

#[test]
fn threads_per_vcpu_breakpoints_on_an_ap_and_stepping_one_vcpu() {
    if !gdb_available() {
        return;
    }
    let dir = scratch("gdb-smp");
    let rom = write(&dir, "smp.rom", &firmware::smp::smp_rom(2, 1000).unwrap());
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &["-smp", "2", "-bios", &rom]);
        let out = gdb(
            &hx,
            &[
                "echo ==start\\n",
                "info threads",
                // The AP's first 32-bit instruction (`mov ax, 0x10`).
                "hbreak *0xa040",
                "continue",
                "echo ==ap\\n",
                "info threads",
                "p/x $pc",
                "stepi",
                "p/x $pc",
                // Stepping the BSP alone: the AP stays where it is.
                "thread 1",
                "echo ==bsp\\n",
                "p/x $pc",
                "set scheduler-locking on",
                "stepi",
                "p/x $pc",
                "thread 2",
                "echo ==ap-again\\n",
                "p/x $pc",
                "set scheduler-locking off",
                "delete",
                // A watchpoint set while the BSP is selected hits on the AP
                // (`lock inc dword [0xb000]` at 0xa04d).
                "thread 1",
                "watch *(int *)0xb000",
                "continue",
                "delete",
                // A software breakpoint as an INT3 (the debug registers are
                // all taken) in the AP's first loop (`mov eax, 1` at 0xa059).
                "echo ==int3\\n",
                "x/5xb 0xa059",
                "hbreak *0x1",
                "hbreak *0x2",
                "hbreak *0x3",
                "hbreak *0x4",
                "break *0xa059",
                "continue",
                "p/x $pc",
                "delete",
                "echo ==end\\n",
                "continue",
            ],
        );
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        no_protocol_errors(&out, &ctx);
        let section = |a: &str, b: &str| &out[out.find(a).unwrap()..out.find(b).unwrap()];
        // Every vCPU is a thread named by its CPU number and mode.
        let start = section("==start", "==ap");
        assert!(start.contains("Thread 1.1 (CPU#0 [real mode])"), "{ctx}");
        assert!(
            start.contains("Thread 1.2 (CPU#1 [real mode, waiting for SIPI])"),
            "{ctx}"
        );
        // The breakpoint hits on the AP's thread, in protected mode.
        assert!(
            out.contains("Thread 2 hit Breakpoint 1, 0x000000000000a040"),
            "{ctx}"
        );
        let ap = section("==ap", "==bsp");
        assert!(
            ap.contains("* 2    Thread 1.2 (CPU#1 [32-bit protected mode])"),
            "{ctx}"
        );
        assert!(
            ap.contains("Thread 1.1 (CPU#0 [64-bit long mode])"),
            "{ctx}"
        );
        assert!(ap.contains("$1 = 0xa040"), "{ctx}");
        assert!(ap.contains("$2 = 0xa044"), "{ctx}");
        // `stepi` of the BSP with scheduler locking moved only the BSP.
        let bsp = section("==bsp", "==ap-again");
        let pcs = printed_hex(bsp);
        assert_eq!(pcs.len(), 2, "{ctx}");
        assert!(pcs[0] >= 0xffff_0000 && pcs[1] != pcs[0], "{ctx}");
        assert!(
            section("==ap-again", "==int3").contains("$5 = 0xa044"),
            "{ctx}"
        );
        assert!(
            out.contains("Thread 2 hit Hardware watchpoint 2: *(int *)0xb000"),
            "{ctx}"
        );
        assert!(out.contains("Old value = 0\nNew value = 1"), "{ctx}");
        let int3 = section("==int3", "==end");
        assert!(
            int3.contains("0xa059:\t0xb8\t0x01\t0x00\t0x00\t0x00"),
            "{ctx}"
        );
        if hx.stderr().contains("cannot stop on INT3 here") {
            // This host's KVM: only the debug registers (all taken).
            assert!(int3.contains("Cannot insert breakpoint 7"), "{ctx}");
        } else {
            assert!(
                int3.contains("Thread 2 hit Breakpoint 7, 0x000000000000a059"),
                "{ctx}"
            );
            assert!(int3.contains("$6 = 0xa059"), "{ctx}");
        }
        // Continued to the end: the ROM checked its counters and powered off.
        assert!(
            out.contains("[Inferior 1 (process 1) exited normally]"),
            "{ctx}"
        );
        assert_eq!(hx.wait(), Some(0), "{ctx}");
        assert!(
            hx.stdout()
                .contains("xadd counter 2000 spinlock counter 500 cross-modified code seen: ok"),
            "{ctx}"
        );
    }
}

#[test]
fn ctrl_c_stops_every_vcpu() {
    if !gdb_available() {
        return;
    }
    let dir = scratch("gdb-smp-ctrlc");
    // Counting for a long time (2^28 locked adds each): it is interrupted
    // and killed long before the end.
    let rom = write(
        &dir,
        "smp.rom",
        &firmware::smp::smp_rom(2, 1 << 28).unwrap(),
    );
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &["-smp", "2", "-bios", &rom]);
        let (g, log) = spawn_gdb(
            &hx,
            &[
                "continue",
                "echo ==stopped\\n",
                "info threads",
                "thread 2",
                "set scheduler-locking on",
                "p/x $pc",
                "stepi",
                "p/x $pc",
                "thread 1",
                "p/x $pc",
                "stepi",
                "p/x $pc",
                // An INT3 (the debug registers are all taken) planted in
                // the AP's loop, which both tiers of the DBT have run for a
                // long time: the translations of that byte are dropped.
                "set scheduler-locking off",
                "hbreak *0x1",
                "hbreak *0x2",
                "hbreak *0x3",
                "hbreak *0x4",
                "break *0xa059",
                "echo ==int3\\n",
                "continue",
                "echo ==end\\n",
                "kill",
            ],
        );
        hx.wait_stdout("2 CPUs started");
        // SAFETY: kill(2) on the pid of a child we spawned and still own.
        unsafe {
            libc::kill(g.id() as i32, libc::SIGINT);
        }
        let out = finish_gdb(g, &log);
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        no_protocol_errors(&out, &ctx);
        assert!(out.contains("received signal SIGINT"), "{ctx}");
        let st = &out[out.find("==stopped").unwrap()..out.find("==int3").unwrap()];
        // Both vCPUs stopped while counting, the BSP in long mode, the AP in
        // its 32-bit code.
        assert!(
            st.contains("Thread 1.1 (CPU#0 [64-bit long mode])"),
            "{ctx}"
        );
        assert!(
            st.contains("Thread 1.2 (CPU#1 [32-bit protected mode])"),
            "{ctx}"
        );
        let pcs = printed_hex(st);
        assert_eq!(pcs.len(), 4, "{ctx}");
        assert!((0xa040..0xa100).contains(&pcs[0]), "{ctx}");
        assert_ne!(pcs[0], pcs[1], "the AP's stepi moved it\n{ctx}");
        assert!(pcs[2] >= 0xffff_0000, "{ctx}");
        assert_ne!(pcs[2], pcs[3], "the BSP's stepi moved it\n{ctx}");
        let int3 = &out[out.find("==int3").unwrap()..out.find("==end").unwrap()];
        if hx.stderr().contains("cannot stop on INT3 here") {
            assert!(int3.contains("Cannot insert breakpoint 5"), "{ctx}");
        } else {
            assert!(
                int3.contains("Thread 2 hit Breakpoint 5, 0x000000000000a059"),
                "{ctx}"
            );
        }
        assert_eq!(hx.wait(), Some(0), "{ctx}");
    }
}

/// The machine control with several vCPUs and a debugger attached
/// (`tests/qmp/debugger_smp.py`): monitor jobs on the AP while the vCPUs
/// run and while gdb holds them, a QMP `stop` that gdb sees as an
/// interrupt, `system_reset` of every vCPU (gdb then shows the BSP at the
/// reset vector and the AP waiting for SIPI), and `quit`.
#[test]
fn qmp_stop_reset_and_quit_with_gdb_and_two_vcpus() {
    if !gdb_available() {
        return;
    }
    let Some(py) = qmp::python() else { return };
    let dir = scratch("gdb-smp-qmp");
    let rom = write(
        &dir,
        "smp.rom",
        &firmware::smp::smp_rom(2, 1 << 28).unwrap(),
    );
    for accel in accels() {
        let sock = dir.join(format!("qmp-{accel}.sock"));
        let marks = dir.join(format!("marks-{accel}"));
        std::fs::create_dir_all(&marks).unwrap();
        let qmp_dev = format!("unix:{},server=on,wait=off", sock.display());
        let mut hx = Hx::start(
            accel,
            "tcp::0",
            &["-smp", "2", "-bios", &rom, "-qmp", &qmp_dev],
        );
        let wait = |name: &str| {
            format!(
                "shell while [ ! -e {0}/{name} ]; do sleep 0.05; done",
                marks.display()
            )
        };
        let touch = |name: &str| format!("shell touch {}/{name}", marks.display());
        let script = [
            "continue".to_string(),
            "echo ==stopped\\n".into(),
            "info threads".into(),
            touch("stopped"),
            wait("reset"),
            "maintenance flush register-cache".into(),
            "echo ==reset\\n".into(),
            "info threads".into(),
            "p/x $pc".into(),
            "echo ==end\\n".into(),
            touch("checked"),
            // hx86 quits (the QMP client's quit) while gdb waits here.
            wait("exited"),
        ];
        let script: Vec<&str> = script.iter().map(|s| s.as_str()).collect();
        let (g, log) = spawn_gdb(&hx, &script);
        hx.wait_stdout("2 CPUs started");
        let r = qmp::script(
            &py,
            "debugger_smp.py",
            &[sock.to_str().unwrap(), marks.to_str().unwrap()],
            TIMEOUT,
        );
        let status = hx.wait();
        std::fs::write(marks.join("exited"), b"").unwrap();
        let out = finish_gdb(g, &log);
        let ctx = format!("-accel {accel}\n{r}\n{out}\n{}", hx.dump());
        assert!(r.contains("OK"), "{ctx}");
        assert_eq!(status, Some(0), "{ctx}");
        assert!(out.contains("received signal SIGINT"), "{ctx}");
        let section = |a: &str, b: &str| &out[out.find(a).unwrap()..out.find(b).unwrap()];
        let st = section("==stopped", "==reset");
        assert!(st.contains("Thread 1.1 (CPU#0 ["), "{ctx}");
        assert!(st.contains("Thread 1.2 (CPU#1 ["), "{ctx}");
        let rs = section("==reset", "==end");
        assert!(rs.contains("Thread 1.1 (CPU#0 [real mode])"), "{ctx}");
        assert!(
            rs.contains("Thread 1.2 (CPU#1 [real mode, waiting for SIPI])"),
            "{ctx}"
        );
        assert!(rs.contains("= 0xfffffff0"), "{ctx}");
    }
}

/// Four vCPUs are four gdb threads; a breakpoint on the APs' shared code
/// stops every AP there in turn (each hit is reported on its own thread);
/// after `detach` the guest runs to its end.
#[test]
fn four_vcpus_each_hit_the_ap_breakpoint_then_detach() {
    if !gdb_available() {
        return;
    }
    let dir = scratch("gdb-smp4");
    let rom = write(&dir, "smp.rom", &firmware::smp::smp_rom(4, 1000).unwrap());
    for accel in accels() {
        let mut hx = Hx::start(accel, "tcp::0", &["-smp", "4", "-bios", &rom]);
        let out = gdb(
            &hx,
            &[
                "echo ==start\\n",
                "info threads",
                "hbreak *0xa040",
                "continue",
                "continue",
                "continue",
                "echo ==hits\\n",
                "info threads",
                "delete",
                "detach",
            ],
        );
        let ctx = format!("-accel {accel}\n{out}\n{}", hx.dump());
        no_protocol_errors(&out, &ctx);
        let start = &out[out.find("==start").unwrap()..out.find("==hits").unwrap()];
        assert!(start.contains("Thread 1.1 (CPU#0 [real mode])"), "{ctx}");
        for cpu in 1..4 {
            assert!(
                start.contains(&format!(
                    "Thread 1.{} (CPU#{cpu} [real mode, waiting for SIPI])",
                    cpu + 1
                )),
                "{ctx}"
            );
        }
        // Every AP stopped at the breakpoint once, each on its own thread.
        let mut hit: Vec<&str> = out
            .lines()
            .filter(|l| l.contains("hit Breakpoint 1, 0x000000000000a040"))
            .collect();
        hit.sort();
        assert_eq!(
            hit,
            [
                "Thread 2 hit Breakpoint 1, 0x000000000000a040 in ?? ()",
                "Thread 3 hit Breakpoint 1, 0x000000000000a040 in ?? ()",
                "Thread 4 hit Breakpoint 1, 0x000000000000a040 in ?? ()",
            ],
            "{ctx}"
        );
        let hits = &out[out.find("==hits").unwrap()..];
        assert_eq!(hits.matches("32-bit protected mode").count(), 3, "{ctx}");
        assert_eq!(hx.wait(), Some(0), "{ctx}");
        assert!(
            hx.stdout()
                .contains("xadd counter 4000 spinlock counter 1000 cross-modified code seen: ok"),
            "{ctx}"
        );
    }
}
