//! Every process a test starts runs in a process group of its own, so the
//! harness can prove a test left nothing running: after the stop, no member
//! of the group may remain. A server that forks (nginx's master and its
//! workers) is stopped the way it expects, with a signal to its leader, and
//! anything still alive after the grace time is killed and reported.

use std::os::unix::process::CommandExt;
use std::process::{Child, Command, ExitStatus};
use std::time::{Duration, Instant};

pub struct ProcessGroup {
    child: Child,
    name: String,
    /// The signal that asks the leader to stop and take its children with it.
    stop_signal: &'static str,
    stopped: bool,
}

/// Members of a group still running after its stop: (pid, command line).
#[derive(Debug)]
pub struct Leftovers(pub Vec<(u32, String)>);

/// How long a stopping group may take before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(10);

impl ProcessGroup {
    /// Starts `command` as the leader of a new process group; `stop_signal`
    /// (e.g. "QUIT" for nginx, "TERM" for most servers) is what `stop` and
    /// `Drop` send it.
    pub fn spawn(mut command: Command, name: &str, stop_signal: &'static str) -> Self {
        let child = command.process_group(0).spawn().unwrap_or_else(|error| panic!("start {name}: {error}"));
        Self { child, name: name.to_owned(), stop_signal, stopped: false }
    }

    pub fn id(&self) -> u32 {
        self.child.id()
    }

    pub fn child_mut(&mut self) -> &mut Child {
        &mut self.child
    }

    /// Sends `signal` to the leader alone, e.g. "KILL" to simulate a crash.
    /// The group is still checked when it is stopped or dropped.
    pub fn signal_leader(&self, signal: &str) {
        signal_pid(&self.child.id().to_string(), signal);
    }

    /// Asks the leader to stop, waits for it and for every other member of
    /// its group, and returns its exit status; whatever outlives the grace
    /// time is killed and returned as the error.
    pub fn stop(&mut self) -> Result<ExitStatus, Leftovers> {
        self.stop_with(self.stop_signal, STOP_GRACE)
    }

    /// As [`ProcessGroup::stop`], with another signal and grace time.
    pub fn stop_with(&mut self, signal: &str, grace: Duration) -> Result<ExitStatus, Leftovers> {
        self.stopped = true;
        let deadline = Instant::now() + grace;
        if self.child.try_wait().ok().flatten().is_none() {
            self.signal_leader(signal);
        }
        let status = loop {
            if let Some(status) = self.child.try_wait().expect("poll the process") {
                break Some(status);
            }
            if Instant::now() >= deadline {
                break None;
            }
            std::thread::sleep(Duration::from_millis(10));
        };
        let group = self.child.id();
        while !members(group).is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        // A leader that did not stop is itself among the members left.
        let left = members(group);
        match status {
            Some(status) if left.is_empty() => Ok(status),
            _ => {
                signal_pid(&format!("-{group}"), "KILL");
                let _ = self.child.wait();
                Err(Leftovers(left))
            }
        }
    }
}

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        if self.stopped {
            return;
        }
        let outcome = self.stop();
        if let Err(Leftovers(left)) = outcome
            && !std::thread::panicking()
        {
            panic!("{} left processes behind after its stop: {left:?}", self.name);
        }
    }
}

fn signal_pid(target: &str, signal: &str) {
    // `--` so a negative target (a whole group) is not read as an option.
    let _ = Command::new("kill").args([&format!("-{signal}"), "--", target]).status();
}

/// Live members of process group `group`, read from /proc. Zombies count as
/// gone: they run nothing, and their parent reaps them.
fn members(group: u32) -> Vec<(u32, String)> {
    let Ok(entries) = std::fs::read_dir("/proc") else { return Vec::new() };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            // "pid (comm) state ppid pgrp ...": comm may hold spaces and ')'.
            let mut fields = stat.get(stat.rfind(')')? + 1..)?.split_whitespace();
            let state = fields.next()?;
            let pgrp: u32 = fields.nth(1)?.parse().ok()?;
            (pgrp == group && state != "Z").then(|| (pid, command_line(pid)))
        })
        .collect()
}

fn command_line(pid: u32) -> String {
    std::fs::read(format!("/proc/{pid}/cmdline"))
        .map(|raw| String::from_utf8_lossy(&raw).replace('\0', " ").trim_end().to_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shell(script: &str) -> Command {
        let mut command = Command::new("sh");
        command.args(["-c", script]);
        command
    }

    #[test]
    fn a_group_whose_leader_takes_its_children_along_stops_clean() {
        // The shell forwards nothing, but TERM to the group's leader ends
        // it, and its child `sleep` is killed by the trap.
        let mut group =
            ProcessGroup::spawn(shell("sleep 30 & child=$!; trap 'kill $child; exit 0' TERM; wait"), "sh", "TERM");
        wait_for_members(group.id(), 2);
        let status = group.stop().expect("nothing left behind");
        assert!(status.success(), "{status:?}");
        assert!(members(group.id()).is_empty());
    }

    #[test]
    fn a_child_that_outlives_its_leader_is_killed_and_reported() {
        // The leader exits on TERM and leaves its child running, as nginx's
        // workers outlive a master killed with SIGKILL.
        let mut group = ProcessGroup::spawn(shell("sleep 30 & trap 'exit 0' TERM; wait"), "sh", "TERM");
        wait_for_members(group.id(), 2);
        let Leftovers(left) = group.stop_with("TERM", Duration::from_millis(300)).expect_err("the sleep outlives sh");
        assert!(left.iter().any(|(_, command)| command.starts_with("sleep 30")), "{left:?}");
        assert!(members(group.id()).is_empty(), "the leftovers were killed");
    }

    fn wait_for_members(group: u32, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while members(group).len() < count {
            assert!(Instant::now() < deadline, "the group never had {count} members");
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}
