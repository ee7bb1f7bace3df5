//! What kiln and the launcher say to each other: length-prefixed JSON frames on a unix stream socket,
//! with file descriptors (a command's stdout and stderr, idmapped mounts) passed alongside.

use std::io;
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The most descriptors one frame carries.
const MAX_FDS: usize = 16;

/// The most bytes one frame carries (a command's environment is the big part).
const MAX_FRAME: usize = 64 << 20;

/// What kiln asks of the launcher.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Request {
    /// The user namespace is mapped: set up the rest (the descriptors are the idmapped mounts the
    /// plan names by index).
    Setup { plan: super::mounts::Plan },
    /// Start a program. Descriptors: stdout, stderr, then stdin when `stdin` is set.
    Run {
        id: u64,
        argv: Vec<String>,
        env: Vec<(String, String)>,
        cwd: PathBuf,
        run_as: Option<(u32, u32)>,
        stdin: bool,
        /// Whether stdout and stderr may come as one stream (on the stdout descriptor), in the
        /// order they were written: kiln's log does not tell them apart.
        #[serde(default)]
        merge: bool,
    },
    /// Kill the program `id` and its process group.
    Kill { id: u64 },
    /// Kill every process in the sandbox but the launcher.
    KillAll,
}

/// What the launcher answers.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "t", rename_all = "snake_case")]
pub enum Reply {
    /// The launcher is in its own user namespace and waits for its id maps.
    UserNs,
    /// The sandbox is set up; programs can run.
    Ready { warnings: Vec<String> },
    /// The sandbox could not be set up.
    Failed { message: String },
    /// A program could not be started.
    NotStarted {
        id: u64,
        message: String,
        not_found: bool,
    },
    /// A program ended.
    Exit {
        id: u64,
        code: Option<i32>,
        signal: Option<i32>,
    },
}

/// Sends one frame: its length, its JSON, and `fds` with the first byte.
pub fn send<T: Serialize>(sock: RawFd, message: &T, fds: &[RawFd]) -> io::Result<()> {
    let body = serde_json::to_vec(message).map_err(io::Error::other)?;
    if body.len() > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "a message to the sandbox of {} MiB is larger than its limit of {} MiB (the command's environment is too large)",
                body.len() >> 20,
                MAX_FRAME >> 20
            ),
        ));
    }
    let mut frame = Vec::with_capacity(body.len() + 4);
    frame.extend_from_slice(&(body.len() as u32).to_le_bytes());
    frame.extend_from_slice(&body);
    let mut sent = send_with_fds(sock, &frame, fds)?;
    while sent < frame.len() {
        // SAFETY: writes from a live buffer of the given length.
        let n = unsafe {
            libc::send(
                sock,
                frame[sent..].as_ptr().cast(),
                frame.len() - sent,
                libc::MSG_NOSIGNAL,
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        sent += n as usize;
    }
    Ok(())
}

fn send_with_fds(sock: RawFd, bytes: &[u8], fds: &[RawFd]) -> io::Result<usize> {
    let mut iov = libc::iovec {
        iov_base: bytes.as_ptr() as *mut libc::c_void,
        iov_len: bytes.len(),
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE(std::mem::size_of_val(fds) as u32) } as usize;
    let mut control = vec![0u8; space];
    // SAFETY: msghdr is plain data; every pointer set below points into live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    if !fds.is_empty() {
        msg.msg_control = control.as_mut_ptr().cast();
        msg.msg_controllen = space as _;
        // SAFETY: the control buffer has room for one header and `fds` (CMSG_SPACE above).
        unsafe {
            let cmsg = libc::CMSG_FIRSTHDR(&msg);
            (*cmsg).cmsg_level = libc::SOL_SOCKET;
            (*cmsg).cmsg_type = libc::SCM_RIGHTS;
            (*cmsg).cmsg_len = libc::CMSG_LEN(std::mem::size_of_val(fds) as u32) as _;
            std::ptr::copy_nonoverlapping(
                fds.as_ptr(),
                libc::CMSG_DATA(cmsg).cast::<RawFd>(),
                fds.len(),
            );
        }
    }
    loop {
        // SAFETY: msg describes live buffers.
        let n = unsafe { libc::sendmsg(sock, &msg, libc::MSG_NOSIGNAL) };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

/// Receives one frame; `Ok(None)` at the end of the stream.
pub fn recv<T: for<'de> Deserialize<'de>>(sock: RawFd) -> io::Result<Option<(T, Vec<OwnedFd>)>> {
    let mut len = [0u8; 4];
    let mut iov = libc::iovec {
        iov_base: len.as_mut_ptr().cast(),
        iov_len: 4,
    };
    // SAFETY: CMSG_SPACE is a pure computation.
    let space = unsafe { libc::CMSG_SPACE((MAX_FDS * std::mem::size_of::<RawFd>()) as u32) };
    let mut control = vec![0u8; space as usize];
    // SAFETY: msghdr is plain data; its pointers point into live buffers.
    let mut msg: libc::msghdr = unsafe { std::mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.as_mut_ptr().cast();
    msg.msg_controllen = space as _;
    let n = loop {
        // SAFETY: msg describes live buffers; MSG_CMSG_CLOEXEC keeps received fds from leaking
        // into programs.
        let n =
            unsafe { libc::recvmsg(sock, &mut msg, libc::MSG_CMSG_CLOEXEC | libc::MSG_WAITALL) };
        if n >= 0 {
            break n as usize;
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    };
    let mut fds = Vec::new();
    // SAFETY: walks the control messages the kernel wrote into `control`.
    unsafe {
        let mut cmsg = libc::CMSG_FIRSTHDR(&msg);
        while !cmsg.is_null() {
            if (*cmsg).cmsg_level == libc::SOL_SOCKET && (*cmsg).cmsg_type == libc::SCM_RIGHTS {
                let data = libc::CMSG_DATA(cmsg).cast::<RawFd>();
                let count = ((*cmsg).cmsg_len as usize - libc::CMSG_LEN(0) as usize)
                    / std::mem::size_of::<RawFd>();
                for i in 0..count {
                    fds.push(OwnedFd::from_raw_fd(std::ptr::read_unaligned(data.add(i))));
                }
            }
            cmsg = libc::CMSG_NXTHDR(&msg, cmsg);
        }
    }
    if n == 0 {
        return Ok(None);
    }
    if n < 4 {
        read_exact(sock, &mut len[n..])?;
    }
    let size = u32::from_le_bytes(len) as usize;
    if size > MAX_FRAME {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            "a frame from the sandbox is too large",
        ));
    }
    let mut body = vec![0u8; size];
    read_exact(sock, &mut body)?;
    let message =
        serde_json::from_slice(&body).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    Ok(Some((message, fds)))
}

/// Takes the whole frames at the start of `buf` (bytes read so far from a stream without
/// descriptors), leaving a partial one in place.
pub fn take_frames<T: for<'de> Deserialize<'de>>(buf: &mut Vec<u8>) -> io::Result<Vec<T>> {
    let mut out = Vec::new();
    let mut at = 0;
    while buf.len() - at >= 4 {
        let size = u32::from_le_bytes([buf[at], buf[at + 1], buf[at + 2], buf[at + 3]]) as usize;
        if size > MAX_FRAME {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "a frame from the sandbox is too large",
            ));
        }
        if buf.len() - at - 4 < size {
            break;
        }
        let body = &buf[at + 4..at + 4 + size];
        out.push(
            serde_json::from_slice(body)
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?,
        );
        at += 4 + size;
    }
    buf.drain(..at);
    Ok(out)
}

fn read_exact(sock: RawFd, mut buf: &mut [u8]) -> io::Result<()> {
    while !buf.is_empty() {
        // SAFETY: reads into a live buffer of the given length.
        let n = unsafe { libc::recv(sock, buf.as_mut_ptr().cast(), buf.len(), 0) };
        if n < 0 {
            let e = io::Error::last_os_error();
            if e.kind() == io::ErrorKind::Interrupted {
                continue;
            }
            return Err(e);
        }
        if n == 0 {
            return Err(io::ErrorKind::UnexpectedEof.into());
        }
        buf = &mut buf[n as usize..];
    }
    Ok(())
}

/// A connected pair of unix stream sockets, both close-on-exec.
pub fn socketpair() -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: socketpair writes two descriptors into the array.
    if unsafe {
        libc::socketpair(
            libc::AF_UNIX,
            libc::SOCK_STREAM | libc::SOCK_CLOEXEC,
            0,
            fds.as_mut_ptr(),
        )
    } != 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

/// A pipe, both ends close-on-exec, with `flags` added (`O_NONBLOCK`): (read, write).
pub fn pipe(flags: libc::c_int) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC | flags) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: fresh descriptors owned by nothing else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}
