//! The WASI a policy gets: the host's own, small, and never blocking.
//!
//! Rust's `std` (and other languages' runtimes) import WASI's CLI, I/O,
//! clock and random interfaces even when a policy uses none of them, so a
//! sandbox must provide them. wasmtime-wasi's would do, but its calls that
//! may wait are `async`, which makes every call into the guest an async
//! call on a fiber of its own; its sync bindings `block_on` inside the
//! runtime's thread instead, which panics there. A policy has nothing to
//! wait for, so these never wait: streams are always ready, and a guest
//! that asks to wait for a clock (a sleep) traps with a message saying so.
//! Policies are then called synchronously, with no fiber switch per call.
//!
//! What a policy sees: no environment, no arguments, no working directory;
//! stdin at its end; clocks that stand at zero (the facts carry the time a
//! policy may use); random bytes from the host. What it writes to stdout or
//! stderr (a panic's message) is kept, up to [`OUTPUT_LIMIT`] per call,
//! and shown with the call's error when the call traps. No files, no
//! network: what a policy imports of them is linked by [`super::refused`],
//! granting nothing.

use super::sandbox::State;
use wasmtime::component::Resource;

mod generated {
    #![allow(missing_docs)]
    wasmtime::component::bindgen!({
        path: "wit",
        world: "pizzja:sandbox/sandbox",
        imports: { default: trappable },
        with: {
            "wasi:io/error.error": super::IoError,
            "wasi:io/poll.pollable": super::Pollable,
            "wasi:io/streams.input-stream": super::InputStream,
            "wasi:io/streams.output-stream": super::OutputStream,
            "wasi:cli/terminal-input.terminal-input": super::Terminal,
            "wasi:cli/terminal-output.terminal-output": super::Terminal,
        },
    });
}

use generated::{Sandbox, wasi};
use wasi::io::streams::StreamError;

/// How much of a call's stdout and stderr is kept (the rest is dropped).
pub const OUTPUT_LIMIT: usize = 4096;

/// The largest buffer a policy may ask random bytes for in one call: a
/// guest's request must not make the host allocate without bound.
const RANDOM_LIMIT: u64 = 64 * 1024;

/// Never made: no stream of ours fails with an error of this kind.
pub struct IoError;

/// What a pollable waits for: nothing (a stream, always ready) or a moment
/// of the stopped monotonic clock.
pub struct Pollable {
    ready: bool,
}

/// Stdin, at its end.
pub struct InputStream;

/// Stdout or stderr: both go into the call's output buffer.
pub struct OutputStream;

/// Never handed out: a policy has no terminal.
pub struct Terminal;

/// Trapping here ends the call; the message becomes its error.
fn cannot_wait() -> wasmtime::Error {
    wasmtime::Error::msg(
        "the policy asked to wait (a sleep?): policies cannot wait, and their clocks stand still",
    )
}

impl State {
    fn write_output(&mut self, bytes: &[u8]) {
        let room = OUTPUT_LIMIT.saturating_sub(self.output.len());
        // Bytes that are not UTF-8 become U+FFFD (three bytes each), so the
        // text is cut again, at a character, to keep the limit.
        let text = String::from_utf8_lossy(&bytes[..bytes.len().min(room)]);
        let mut end = text.len().min(room);
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        self.output.push_str(&text[..end]);
    }
}

impl wasi::io::error::Host for State {}

impl wasi::io::error::HostError for State {
    fn to_debug_string(&mut self, _: Resource<IoError>) -> wasmtime::Result<String> {
        Ok("no error".into())
    }

    fn drop(&mut self, rep: Resource<IoError>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wasi::io::poll::Host for State {
    fn poll(&mut self, pollables: Vec<Resource<Pollable>>) -> wasmtime::Result<Vec<u32>> {
        let mut ready = Vec::new();
        for (i, p) in pollables.iter().enumerate() {
            if self.table.get(p)?.ready {
                ready.push(u32::try_from(i)?);
            }
        }
        // WASI's poll returns once at least one is ready; with none, it
        // would wait.
        if ready.is_empty() {
            return Err(cannot_wait());
        }
        Ok(ready)
    }
}

impl wasi::io::poll::HostPollable for State {
    fn ready(&mut self, p: Resource<Pollable>) -> wasmtime::Result<bool> {
        Ok(self.table.get(&p)?.ready)
    }

    fn block(&mut self, p: Resource<Pollable>) -> wasmtime::Result<()> {
        if self.table.get(&p)?.ready {
            Ok(())
        } else {
            Err(cannot_wait())
        }
    }

    fn drop(&mut self, rep: Resource<Pollable>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl State {
    fn pollable(&mut self, ready: bool) -> wasmtime::Result<Resource<Pollable>> {
        Ok(self.table.push(Pollable { ready })?)
    }
}

impl wasi::io::streams::Host for State {}

impl wasi::io::streams::HostInputStream for State {
    fn read(
        &mut self,
        _: Resource<InputStream>,
        _len: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, StreamError>> {
        Ok(Err(StreamError::Closed))
    }

    // Nothing here waits: each blocking call is its non-blocking twin.
    fn blocking_read(
        &mut self,
        s: Resource<InputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<Vec<u8>, StreamError>> {
        self.read(s, len)
    }

    fn skip(
        &mut self,
        _: Resource<InputStream>,
        _len: u64,
    ) -> wasmtime::Result<Result<u64, StreamError>> {
        Ok(Err(StreamError::Closed))
    }

    fn blocking_skip(
        &mut self,
        s: Resource<InputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<u64, StreamError>> {
        self.skip(s, len)
    }

    fn subscribe(&mut self, _: Resource<InputStream>) -> wasmtime::Result<Resource<Pollable>> {
        self.pollable(true)
    }

    fn drop(&mut self, rep: Resource<InputStream>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wasi::io::streams::HostOutputStream for State {
    fn check_write(
        &mut self,
        _: Resource<OutputStream>,
    ) -> wasmtime::Result<Result<u64, StreamError>> {
        // Always room: what does not fit in the buffer is dropped, as a
        // terminal nobody reads would.
        Ok(Ok(OUTPUT_LIMIT as u64))
    }

    fn write(
        &mut self,
        _: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        self.write_output(&contents);
        Ok(Ok(()))
    }

    fn blocking_write_and_flush(
        &mut self,
        s: Resource<OutputStream>,
        contents: Vec<u8>,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        self.write(s, contents)
    }

    fn flush(&mut self, _: Resource<OutputStream>) -> wasmtime::Result<Result<(), StreamError>> {
        Ok(Ok(()))
    }

    fn blocking_flush(
        &mut self,
        s: Resource<OutputStream>,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        self.flush(s)
    }

    fn subscribe(&mut self, _: Resource<OutputStream>) -> wasmtime::Result<Resource<Pollable>> {
        self.pollable(true)
    }

    fn write_zeroes(
        &mut self,
        _: Resource<OutputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        let n = usize::try_from(len).unwrap_or(usize::MAX).min(OUTPUT_LIMIT);
        self.write_output(&vec![0; n]);
        Ok(Ok(()))
    }

    fn blocking_write_zeroes_and_flush(
        &mut self,
        s: Resource<OutputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<(), StreamError>> {
        self.write_zeroes(s, len)
    }

    fn splice(
        &mut self,
        _: Resource<OutputStream>,
        _src: Resource<InputStream>,
        _len: u64,
    ) -> wasmtime::Result<Result<u64, StreamError>> {
        // The only input stream is stdin, at its end.
        Ok(Err(StreamError::Closed))
    }

    fn blocking_splice(
        &mut self,
        s: Resource<OutputStream>,
        src: Resource<InputStream>,
        len: u64,
    ) -> wasmtime::Result<Result<u64, StreamError>> {
        self.splice(s, src, len)
    }

    fn drop(&mut self, rep: Resource<OutputStream>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wasi::cli::environment::Host for State {
    fn get_environment(&mut self) -> wasmtime::Result<Vec<(String, String)>> {
        Ok(Vec::new())
    }

    fn get_arguments(&mut self) -> wasmtime::Result<Vec<String>> {
        Ok(Vec::new())
    }

    fn initial_cwd(&mut self) -> wasmtime::Result<Option<String>> {
        Ok(None)
    }
}

impl wasi::cli::exit::Host for State {
    fn exit(&mut self, status: Result<(), ()>) -> wasmtime::Result<()> {
        Err(wasmtime::Error::msg(match status {
            Ok(()) => "the policy called exit (success)",
            Err(()) => "the policy called exit (failure)",
        }))
    }

    fn exit_with_code(&mut self, code: u8) -> wasmtime::Result<()> {
        Err(wasmtime::Error::msg(format!(
            "the policy called exit (code {code})"
        )))
    }
}

impl wasi::cli::stdin::Host for State {
    fn get_stdin(&mut self) -> wasmtime::Result<Resource<InputStream>> {
        Ok(self.table.push(InputStream)?)
    }
}

impl wasi::cli::stdout::Host for State {
    fn get_stdout(&mut self) -> wasmtime::Result<Resource<OutputStream>> {
        Ok(self.table.push(OutputStream)?)
    }
}

impl wasi::cli::stderr::Host for State {
    fn get_stderr(&mut self) -> wasmtime::Result<Resource<OutputStream>> {
        Ok(self.table.push(OutputStream)?)
    }
}

impl wasi::cli::terminal_input::Host for State {}

impl wasi::cli::terminal_input::HostTerminalInput for State {
    fn drop(&mut self, rep: Resource<Terminal>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wasi::cli::terminal_output::Host for State {}

impl wasi::cli::terminal_output::HostTerminalOutput for State {
    fn drop(&mut self, rep: Resource<Terminal>) -> wasmtime::Result<()> {
        self.table.delete(rep)?;
        Ok(())
    }
}

impl wasi::cli::terminal_stdin::Host for State {
    fn get_terminal_stdin(&mut self) -> wasmtime::Result<Option<Resource<Terminal>>> {
        Ok(None)
    }
}

impl wasi::cli::terminal_stdout::Host for State {
    fn get_terminal_stdout(&mut self) -> wasmtime::Result<Option<Resource<Terminal>>> {
        Ok(None)
    }
}

impl wasi::cli::terminal_stderr::Host for State {
    fn get_terminal_stderr(&mut self) -> wasmtime::Result<Option<Resource<Terminal>>> {
        Ok(None)
    }
}

impl wasi::clocks::monotonic_clock::Host for State {
    fn now(&mut self) -> wasmtime::Result<u64> {
        Ok(0)
    }

    fn resolution(&mut self) -> wasmtime::Result<u64> {
        Ok(1)
    }

    fn subscribe_instant(&mut self, when: u64) -> wasmtime::Result<Resource<Pollable>> {
        // The clock stands at zero: only a moment already reached is ready.
        self.pollable(when == 0)
    }

    fn subscribe_duration(&mut self, when: u64) -> wasmtime::Result<Resource<Pollable>> {
        self.pollable(when == 0)
    }
}

impl wasi::clocks::wall_clock::Host for State {
    fn now(&mut self) -> wasmtime::Result<wasi::clocks::wall_clock::Datetime> {
        Ok(wasi::clocks::wall_clock::Datetime {
            seconds: 0,
            nanoseconds: 0,
        })
    }

    fn resolution(&mut self) -> wasmtime::Result<wasi::clocks::wall_clock::Datetime> {
        Ok(wasi::clocks::wall_clock::Datetime {
            seconds: 0,
            nanoseconds: 1,
        })
    }
}

fn random_bytes(len: u64) -> wasmtime::Result<Vec<u8>> {
    use rand::RngCore as _;
    if len > RANDOM_LIMIT {
        return Err(wasmtime::Error::msg(format!(
            "the policy asked for {len} random bytes at once; at most {RANDOM_LIMIT}"
        )));
    }
    let mut bytes = vec![0; len as usize];
    rand::rng().fill_bytes(&mut bytes);
    Ok(bytes)
}

impl wasi::random::random::Host for State {
    fn get_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        random_bytes(len)
    }

    fn get_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(rand::random())
    }
}

impl wasi::random::insecure::Host for State {
    fn get_insecure_random_bytes(&mut self, len: u64) -> wasmtime::Result<Vec<u8>> {
        random_bytes(len)
    }

    fn get_insecure_random_u64(&mut self) -> wasmtime::Result<u64> {
        Ok(rand::random())
    }
}

impl wasi::random::insecure_seed::Host for State {
    fn insecure_seed(&mut self) -> wasmtime::Result<(u64, u64)> {
        Ok(rand::random())
    }
}

/// Links the sandbox's WASI.
pub(super) fn add_to_linker(
    linker: &mut wasmtime::component::Linker<State>,
) -> wasmtime::Result<()> {
    Sandbox::add_to_linker::<State, wasmtime::component::HasSelf<State>>(linker, |s| s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_a_guest_writes_is_kept_up_to_the_limit_even_when_not_utf8() {
        let mut state = State {
            table: wasmtime::component::ResourceTable::new(),
            output: String::new(),
            limits: wasmtime::StoreLimitsBuilder::new().build(),
            account: String::new(),
            backend: std::sync::Arc::new(super::super::MemoryState::default()),
            deadline: std::time::Instant::now(),
        };
        state.write_output(b"ok ");
        state.write_output(&[0xff; 2 * OUTPUT_LIMIT]);
        assert!(state.output.len() <= OUTPUT_LIMIT, "{}", state.output.len());
        assert!(state.output.starts_with("ok \u{fffd}"));
        state.write_output(b"more");
        assert!(!state.output.ends_with("more"), "nothing past the limit");
    }
}
