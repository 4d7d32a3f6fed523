//! gdb's `monitor` command: the human monitor's commands
//! ([`crate::monitor::hmp`]) on the CPU the debugger holds. Memory reads
//! hide gdb's breakpoint bytes; `system_reset` resets at once (gdb's
//! register cache is then stale) and `quit` ends the session; `stop` and
//! `cont` are the debugger's business.

use std::sync::Arc;

use gdbstub::outputln;
use gdbstub::target::ext::monitor_cmd::ConsoleOutput;
use vm_memory::GuestMemoryMmap;
use x86::CpuState;

use super::target::{HxTarget, Request};
use crate::control::Control;
use crate::monitor::hmp::{self, HmpTarget};

impl HmpTarget for HxTarget<'_> {
    fn cpu_state(&mut self) -> Result<CpuState, String> {
        self.state().map_err(|e| e.0)
    }
    fn mem(&self) -> &GuestMemoryMmap {
        &self.mem
    }
    fn control(&self) -> &Arc<Control> {
        &self.ctl
    }
    fn read_linear(&mut self, _st: &CpuState, lin: u64, data: &mut [u8]) -> usize {
        HxTarget::read_linear(self, lin, data)
    }
    fn system_reset(&mut self) -> String {
        match self.reset_machine() {
            Ok(()) => {
                self.invalidate();
                self.ctl
                    .reset_done(crate::control::Cause::HostQmpSystemReset);
                "the machine was reset; gdb's register cache is stale: run \
                 `maintenance flush register-cache` (or `stepi`)"
                    .to_string()
            }
            Err(e) => format!("error: {e:#}"),
        }
    }
    fn quit(&mut self) -> String {
        self.request = Some(Request::Quit(0));
        "hx86 is quitting".to_string()
    }
    fn run_control(&mut self, _run: bool) -> String {
        "the debugger runs and stops the CPU here (continue, Ctrl-C)".to_string()
    }
}

/// Runs one monitor command, writing its output to gdb's console.
pub fn run(t: &mut HxTarget<'_>, cmd: &[u8], mut out: ConsoleOutput<'_>) {
    let text = match std::str::from_utf8(cmd) {
        Ok(s) => s.trim(),
        Err(_) => {
            outputln!(out, "error: the command is not UTF-8");
            return;
        }
    };
    let reply = if text.is_empty() {
        hmp::execute(t, "help")
    } else {
        hmp::execute(t, text)
    };
    for line in reply.lines() {
        outputln!(out, "{}", line);
    }
}
