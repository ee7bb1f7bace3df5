//! The filesystem a build sees, planned by kiln and carried out by the launcher inside the build's
//! mount namespace, in the order Bazel's linux-sandbox and bubblewrap use: a fresh tmpfs as the new
//! root; each top-level folder of the host's root as an overlay (the host's folder read-only below, a
//! private folder of the build above); a minimal `/dev`, a fresh `/tmp`, `/run` and `/dev/shm`; the
//! build's own `HOME`; the workspace and `--writable` folders read-write at their real paths;
//! toolchains and `--expose` folders read-only; kiln's own folders and the secrets file hidden; then
//! `pivot_root`, the build's own `/proc` with the parts that reach the kernel masked.

use std::ffi::{CString, OsString};
use std::io;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

/// One step of the plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    /// A fresh tmpfs.
    Tmpfs {
        target: PathBuf,
        mode: u32,
        size_mib: u64,
    },
    /// The folder of the build's private layers (uppers and work folders): a tmpfs of at most
    /// `size` bytes (the kernel's default, half the RAM, when `None`) where tmpfs keeps the
    /// `user.*` attributes overlay needs (Linux 6.6 and later); elsewhere the folder itself, on the
    /// scratch folder's disk.
    Layer { target: PathBuf, size: Option<u64> },
    /// A folder (and its parents).
    Dir { path: PathBuf, mode: u32 },
    /// A file of a layer, written before the layer is mounted (the password-less shadow copies).
    /// Its owner is kept where the build's user namespace maps it.
    File {
        path: PathBuf,
        text: String,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// The empty stand-in of a host file or folder the build must not read, put in the layer
    /// `upper` above the host's `lower` folder (`path` is relative to both): an empty file, or an
    /// empty opaque folder, with the host's mode and owner, below folders made like the host's.
    /// Nothing is made for what the host no longer has.
    Hide {
        upper: PathBuf,
        lower: PathBuf,
        path: PathBuf,
        dir: bool,
        mode: u32,
        uid: u32,
        gid: u32,
    },
    /// A symbolic link.
    Symlink { path: PathBuf, to: PathBuf },
    /// A mount kiln prepared (an idmapped clone), passed as descriptor number `fd` of the setup.
    Attach { fd: usize, target: PathBuf },
    /// An overlay: `lower` read-only below, `upper` private above. Where the kernel refuses it, the
    /// lower folder is bound read-only instead (and the plan's warnings say so).
    Overlay {
        lower: PathBuf,
        upper: PathBuf,
        work: PathBuf,
        target: PathBuf,
    },
    /// A recursive bind mount; read-only all the way down when `readonly`. Skipped when the source
    /// is missing and `optional`.
    Bind {
        source: PathBuf,
        target: PathBuf,
        readonly: bool,
        optional: bool,
    },
    /// The build's own `/proc` (it lives in the build's pid namespace).
    Proc { target: PathBuf },
    /// A read-only sysfs of the build's own network namespace (the host's interfaces are not in
    /// it); where the kernel refuses one, the host's `/sys`, read-only.
    Sysfs { target: PathBuf },
    /// A new devpts instance.
    Devpts { target: PathBuf },
    /// Hides what is at `target`: an empty read-only tmpfs over a folder, `/dev/null` over a file.
    /// Nothing to hide is fine.
    Mask { target: PathBuf },
    /// Makes `target` read-only (a bind onto itself).
    Readonly { target: PathBuf },
}

/// The whole plan.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Plan {
    /// Where the new root is put together before `pivot_root`.
    pub root: PathBuf,
    /// Steps before `pivot_root` (paths as the launcher sees them then).
    pub before: Vec<Op>,
    /// Steps after it (paths as the build sees them).
    pub after: Vec<Op>,
    /// Whether the launcher has a network namespace of its own (loopback to bring up).
    pub own_network: bool,
    /// The build's host name.
    pub hostname: String,
    /// `RLIMIT_NPROC` and `RLIMIT_AS` for the build's programs.
    pub pids: u64,
    pub memory: Option<u64>,
    /// Whether `sh -c` commands run in the session shell ([`super::shell`]).
    pub session_shell: bool,
}

/// What kiln knows when it plans the filesystem.
pub struct Layout<'a> {
    /// The build's private folder (upper layers, work folders, home, tmp).
    pub scratch: &'a Path,
    /// Whether the host's root, the scratch folder and the read-write folders come as idmapped
    /// mounts (kiln runs as root) or are reached directly (rootless).
    pub idmapped: bool,
    /// Read-write at their real paths: the workspace, the session folder, `--writable` folders.
    /// With idmapped mounts, those outside the scratch folder are attached from descriptors 2, 3…
    /// in this order (see [`Layout::attached`]).
    pub writable: &'a [PathBuf],
    /// Read-only at their real paths: `--expose`, kiln's helper programs, a certificate file.
    pub expose: &'a [PathBuf],
    /// Copy-on-write at their real paths: toolchain folders found on `PATH` under a home and their
    /// version managers (`~/.pyenv`, `~/.cargo/bin`...), which a build writes as on CodeBuild's
    /// images (`pyenv rehash`, `pip install`): the writes go to the build's private layer. As root,
    /// attached from descriptors after `expose`'s, in this order.
    pub toolchains: &'a [PathBuf],
    /// Read-only even inside a read-write folder (a project's `.git`, whose hooks and config git
    /// would run on the host).
    pub protect: &'a [PathBuf],
    /// Hidden wherever they would be visible: kiln's own folders, the secrets file, credentials.
    pub hide: &'a [PathBuf],
    /// The host's top-level entries and its mount points (from `/proc/self/mountinfo`).
    pub top: &'a [(String, TopKind)],
    pub mount_points: &'a [PathBuf],
    /// Whether the build has a network namespace of its own.
    pub own_network: bool,
    /// The most the private layers may hold, in bytes (`--disk-limit`).
    pub layer_size: Option<u64>,
    /// What the build must not read of the host's overlaid folders (see [`Op::Hide`]).
    pub private: &'a [Private],
    /// Files the layers start with, at the host paths they cover (see [`Op::File`]).
    pub layer_files: &'a [LayerFile],
}

/// A host file others may not read, or folder others may not enter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Private {
    pub path: PathBuf,
    pub dir: bool,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// A file a layer starts with, covering the host's file at `path`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerFile {
    pub path: PathBuf,
    pub text: String,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// What a top-level entry of the host's root is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TopKind {
    Dir,
    File,
    Symlink,
}

/// Descriptor numbers of the idmapped mounts, in the order the plan expects them.
pub const FD_ROOT: usize = 0;
pub const FD_SCRATCH: usize = 1;

/// Top-level folders that are never the host's: the build gets its own.
pub const OWN: &[&str] = &[
    "proc",
    "sys",
    "dev",
    "tmp",
    "run",
    "root",
    "home",
    "lost+found",
];

/// `/proc` entries that reach the kernel or the host, hidden as Docker hides them.
const PROC_MASKED: &[&str] = &[
    "/proc/kcore",
    "/proc/keys",
    "/proc/timer_list",
    "/proc/sched_debug",
    "/proc/sysrq-trigger",
    "/proc/latency_stats",
    "/proc/kmsg",
    "/proc/acpi",
    "/proc/scsi",
    "/proc/asound",
];
const PROC_READONLY: &[&str] = &["/proc/sys", "/proc/bus", "/proc/fs", "/proc/irq"];

/// Device nodes the build gets from the host, bound in (a user namespace cannot make them).
const DEVICES: &[&str] = &["null", "zero", "full", "random", "urandom", "tty"];

impl Layout<'_> {
    /// The path through which the launcher reaches the host's `path` read-only.
    fn host(&self, path: &Path) -> PathBuf {
        if self.idmapped {
            join(&self.scratch.join("mnt/root"), path)
        } else {
            path.to_path_buf()
        }
    }

    /// The path through which the launcher reaches `rel` in the scratch folder, read-write.
    fn scratch(&self, rel: &str) -> PathBuf {
        if self.idmapped {
            self.scratch.join("mnt/scratch").join(rel)
        } else {
            self.scratch.join(rel)
        }
    }

    /// The read-write folders kiln must pass as idmapped mounts, after the root and the scratch
    /// folder, in descriptor order.
    pub fn attached(&self) -> Vec<&Path> {
        self.writable
            .iter()
            .filter(|p| self.idmapped && !p.starts_with(self.scratch))
            .map(PathBuf::as_path)
            .collect()
    }

    /// The plan. Read-write folders below the scratch folder are reached through it; the others are
    /// attached (idmapped) or bound.
    pub fn plan(&self) -> Plan {
        let r = self.scratch.join("root");
        let at = |p: &Path| join(&r, p);
        let mut before = vec![Op::Tmpfs {
            target: r.clone(),
            mode: 0o755,
            size_mib: 64,
        }];
        if self.idmapped {
            before.push(Op::Attach {
                fd: FD_ROOT,
                target: self.scratch.join("mnt/root"),
            });
            before.push(Op::Attach {
                fd: FD_SCRATCH,
                target: self.scratch.join("mnt/scratch"),
            });
        }
        before.push(Op::Layer {
            target: self.scratch("layers"),
            size: self.layer_size,
        });
        let mut overlaid = Vec::new();
        for (name, kind) in self.top {
            let path = Path::new("/").join(name);
            if OWN.contains(&name.as_str()) {
                continue;
            }
            match kind {
                TopKind::Symlink => {
                    if let Ok(to) = std::fs::read_link(&path) {
                        before.push(Op::Symlink {
                            path: at(&path),
                            to,
                        });
                    }
                }
                TopKind::File => before.push(Op::Bind {
                    source: self.host(&path),
                    target: at(&path),
                    readonly: true,
                    optional: true,
                }),
                TopKind::Dir if self.scratch.starts_with(&path) || !plain(name) => {
                    before.push(Op::Bind {
                        source: path.clone(),
                        target: at(&path),
                        readonly: true,
                        optional: true,
                    });
                }
                TopKind::Dir => {
                    let upper = self.scratch(&format!("layers/upper/{name}"));
                    let work = self.scratch(&format!("layers/work/{name}"));
                    for dir in [&upper, &work] {
                        before.push(Op::Dir {
                            path: dir.clone(),
                            mode: 0o755,
                        });
                    }
                    // What the layer starts with is written before the overlay is mounted.
                    let below = |p: &Path| p.starts_with(&path);
                    for file in self.layer_files.iter().filter(|f| below(&f.path)) {
                        before.push(Op::File {
                            path: join(&upper, file.path.strip_prefix(&path).unwrap_or(&file.path)),
                            text: file.text.clone(),
                            mode: file.mode,
                            uid: file.uid,
                            gid: file.gid,
                        });
                    }
                    for p in self.private.iter().filter(|p| below(&p.path)) {
                        // A file the layer starts with already stands in for the host's.
                        if self.layer_files.iter().any(|f| f.path == p.path) {
                            continue;
                        }
                        before.push(Op::Hide {
                            upper: upper.clone(),
                            lower: self.host(&path),
                            path: p.path.strip_prefix(&path).unwrap_or(&p.path).to_path_buf(),
                            dir: p.dir,
                            mode: p.mode,
                            uid: p.uid,
                            gid: p.gid,
                        });
                    }
                    before.push(Op::Overlay {
                        lower: self.host(&path),
                        upper,
                        work,
                        target: at(&path),
                    });
                    overlaid.push(path);
                }
            }
        }
        // Other file systems mounted below an overlaid folder are not part of its overlay: they are
        // bound in read-only.
        for point in self.mount_points {
            if point.parent().is_some_and(|p| p != Path::new("/"))
                && overlaid.iter().any(|top| point.starts_with(top))
                && !point.starts_with(self.scratch)
            {
                before.push(Op::Bind {
                    source: point.clone(),
                    target: at(point),
                    readonly: true,
                    optional: true,
                });
            }
        }
        before.push(if self.own_network {
            Op::Sysfs {
                target: at(Path::new("/sys")),
            }
        } else {
            Op::Bind {
                source: "/sys".into(),
                target: at(Path::new("/sys")),
                readonly: true,
                optional: true,
            }
        });
        // /dev: the few devices programs use, a private devpts and shared memory.
        before.push(Op::Tmpfs {
            target: at(Path::new("/dev")),
            mode: 0o755,
            size_mib: 1,
        });
        for device in DEVICES {
            before.push(Op::Bind {
                source: Path::new("/dev").join(device),
                target: at(&Path::new("/dev").join(device)),
                readonly: false,
                optional: true,
            });
        }
        before.push(Op::Devpts {
            target: at(Path::new("/dev/pts")),
        });
        for (link, to) in [
            ("ptmx", "pts/ptmx"),
            ("fd", "/proc/self/fd"),
            ("stdin", "/proc/self/fd/0"),
            ("stdout", "/proc/self/fd/1"),
            ("stderr", "/proc/self/fd/2"),
        ] {
            before.push(Op::Symlink {
                path: at(&Path::new("/dev").join(link)),
                to: to.into(),
            });
        }
        before.push(Op::Tmpfs {
            target: at(Path::new("/dev/shm")),
            mode: 0o1777,
            size_mib: 0,
        });
        before.push(Op::Tmpfs {
            target: at(Path::new("/run")),
            mode: 0o755,
            size_mib: 64,
        });
        before.push(Op::Dir {
            path: at(Path::new("/run/lock")),
            mode: 0o1777,
        });
        before.push(Op::Tmpfs {
            target: at(Path::new("/home")),
            mode: 0o755,
            size_mib: 1,
        });
        before.push(Op::Bind {
            source: self.scratch("tmp"),
            target: at(Path::new("/tmp")),
            readonly: false,
            optional: false,
        });
        before.push(Op::Bind {
            source: self.scratch("home"),
            target: at(Path::new("/root")),
            readonly: false,
            optional: false,
        });
        // As root, kiln passes `expose` as mounts it opened itself (the launcher's id outside
        // cannot enter a home only the host's root may, as /root): after the writable ones, in
        // `expose`'s order.
        let mut exposed_fd = FD_SCRATCH + 1 + self.attached().len();
        for path in self.expose {
            if self.idmapped {
                before.push(Op::Attach {
                    fd: exposed_fd,
                    target: at(path),
                });
                exposed_fd += 1;
            } else {
                before.push(Op::Bind {
                    source: path.clone(),
                    target: at(path),
                    readonly: true,
                    optional: true,
                });
            }
        }
        // Toolchains: the host's folder below (attached where the launcher reaches it as root),
        // a private upper of the build's above. A path overlay's options cannot carry, or a folder
        // below another toolchain's (its overlay shows it already), is not overlaid on its own.
        for (i, path) in self.toolchains.iter().enumerate() {
            let fd = exposed_fd + i;
            let nested = self
                .toolchains
                .iter()
                .any(|other| other != path && path.starts_with(other));
            let lower = if self.idmapped {
                let staged = self.scratch(&format!("mnt/toolchain/{i}"));
                before.push(Op::Attach {
                    fd,
                    target: staged.clone(),
                });
                staged
            } else {
                path.clone()
            };
            if nested {
                continue;
            }
            if !plain(&lower.to_string_lossy()) {
                before.push(Op::Bind {
                    source: lower,
                    target: at(path),
                    readonly: true,
                    optional: true,
                });
                continue;
            }
            let upper = self.scratch(&format!("layers/toolchain/{i}/upper"));
            let work = self.scratch(&format!("layers/toolchain/{i}/work"));
            for dir in [&upper, &work] {
                before.push(Op::Dir {
                    path: dir.clone(),
                    mode: 0o755,
                });
            }
            before.push(Op::Overlay {
                lower,
                upper,
                work,
                target: at(path),
            });
        }
        let mut next_fd = FD_SCRATCH + 1;
        for path in self.writable {
            match path.strip_prefix(self.scratch) {
                Ok(rel) => before.push(Op::Bind {
                    source: self.scratch(&rel.to_string_lossy()),
                    target: at(path),
                    readonly: false,
                    optional: false,
                }),
                Err(_) if self.idmapped => {
                    before.push(Op::Attach {
                        fd: next_fd,
                        target: at(path),
                    });
                    next_fd += 1;
                }
                Err(_) => before.push(Op::Bind {
                    source: path.clone(),
                    target: at(path),
                    readonly: false,
                    optional: false,
                }),
            }
        }
        for path in self.protect {
            before.push(Op::Bind {
                source: at(path),
                target: at(path),
                readonly: true,
                optional: true,
            });
        }
        // What the build has of its own (its HOME, /tmp...) shows nothing of the host but what is
        // bound into it: a hidden path there is masked only below such a bind.
        for path in self.hide {
            let own = OWN.iter().any(|o| path.starts_with(Path::new("/").join(o)));
            let bound = self
                .writable
                .iter()
                .chain(self.expose)
                .chain(self.toolchains)
                .any(|b| path.starts_with(b));
            if !own || bound {
                before.push(Op::Mask { target: at(path) });
            }
        }
        // The kernel lets a user namespace mount a proc only while the host's is still in view.
        before.push(Op::Proc {
            target: at(Path::new("/proc")),
        });
        let mut after = Vec::new();
        after.extend(PROC_MASKED.iter().map(|p| Op::Mask { target: p.into() }));
        after.extend(
            PROC_READONLY
                .iter()
                .map(|p| Op::Readonly { target: p.into() }),
        );
        Plan {
            root: r,
            before,
            after,
            own_network: self.own_network,
            ..Plan::default()
        }
    }
}

/// Whether a top-level name can go into overlay's options as it is.
fn plain(name: &str) -> bool {
    !name.contains([',', ':', '\\', '='])
}

/// `path` (absolute) below `base`.
pub fn join(base: &Path, path: &Path) -> PathBuf {
    base.join(path.strip_prefix("/").unwrap_or(path))
}

/// The host's top-level entries.
pub fn top_level() -> Vec<(String, TopKind)> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir("/") {
        for entry in entries.flatten() {
            let Ok(kind) = entry.file_type() else {
                continue;
            };
            let kind = if kind.is_symlink() {
                TopKind::Symlink
            } else if kind.is_dir() {
                TopKind::Dir
            } else {
                TopKind::File
            };
            out.push((entry.file_name().to_string_lossy().into_owned(), kind));
        }
    }
    out.sort();
    out
}

/// The host's mount points, from `/proc/self/mountinfo` (octal escapes decoded).
pub fn mount_points() -> Vec<PathBuf> {
    let Ok(text) = std::fs::read_to_string("/proc/self/mountinfo") else {
        return Vec::new();
    };
    let mut points: Vec<PathBuf> = text
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .map(unescape)
        .collect();
    points.sort();
    points.dedup();
    points
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
pub(crate) fn unescape(field: &str) -> PathBuf {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes
            .get(i + 1..i + 4)
            .filter(|_| bytes[i] == b'\\')
            .filter(|digits| digits.iter().all(|d| (b'0'..=b'7').contains(d)))
            .and_then(|d| {
                let value = d.iter().fold(0u16, |acc, d| acc * 8 + u16::from(d - b'0'));
                u8::try_from(value).ok()
            });
        match octal {
            Some(byte) => {
                out.push(byte);
                i += 4;
            }
            None => {
                out.push(bytes[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

// ---- carrying the plan out, in the launcher ----

pub const OPEN_TREE_CLONE: libc::c_uint = 1;
const AT_RECURSIVE: libc::c_uint = 0x8000;
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
const MOUNT_ATTR_NOSUID: u64 = 0x2;
const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 0x4;

/// `struct mount_attr` of `mount_setattr(2)`.
#[repr(C)]
pub struct MountAttr {
    pub attr_set: u64,
    pub attr_clr: u64,
    pub propagation: u64,
    pub userns_fd: u64,
}

fn cstr(path: &Path) -> io::Result<CString> {
    CString::new(path.as_os_str().as_encoded_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a NUL in a path"))
}

fn check(rc: libc::c_long, what: &str, path: &Path) -> io::Result<()> {
    if rc < 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("{what} {}: {e}", path.display()),
        ));
    }
    Ok(())
}

fn mount(
    source: &str,
    target: &Path,
    fstype: &str,
    flags: libc::c_ulong,
    data: Option<&str>,
) -> io::Result<()> {
    let source = CString::new(source).map_err(io::Error::other)?;
    let fstype = CString::new(fstype).map_err(io::Error::other)?;
    let data = data
        .map(CString::new)
        .transpose()
        .map_err(io::Error::other)?;
    let target_c = cstr(target)?;
    // SAFETY: every pointer is a live NUL-terminated string or null.
    let rc = unsafe {
        libc::mount(
            source.as_ptr(),
            target_c.as_ptr(),
            fstype.as_ptr(),
            flags,
            data.as_ref()
                .map_or(std::ptr::null(), |d| d.as_ptr().cast()),
        )
    };
    check(rc as libc::c_long, "cannot mount on", target)
}

fn bind(source: &Path, target: &Path) -> io::Result<()> {
    let source_c = cstr(source)?;
    let target_c = cstr(target)?;
    // SAFETY: live NUL-terminated strings; a bind mount takes no file system type or data.
    let rc = unsafe {
        libc::mount(
            source_c.as_ptr(),
            target_c.as_ptr(),
            std::ptr::null(),
            libc::MS_BIND | libc::MS_REC,
            std::ptr::null(),
        )
    };
    check(rc as libc::c_long, "cannot bind onto", target)
}

/// Sets mount attributes on the mount at `path` and every mount below it.
fn setattr(path: &Path, set: u64) -> io::Result<()> {
    let path_c = cstr(path)?;
    let attr = MountAttr {
        attr_set: set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: 0,
    };
    // SAFETY: mount_setattr reads a live path and a MountAttr of the size given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            libc::AT_FDCWD,
            path_c.as_ptr(),
            AT_RECURSIVE,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(rc, "cannot make read-only", path)
}

/// A detached, idmapped clone of the mount at `path` (not of the mounts below it): files owned by
/// `n` on disk appear as the user namespace's `n`.
pub fn idmapped_clone(path: &Path, userns: RawFd, readonly: bool) -> io::Result<OwnedFd> {
    let fd = clone_tree(path)?;
    let ro = if readonly { MOUNT_ATTR_RDONLY } else { 0 };
    set_mount_attr(
        &fd,
        path,
        MOUNT_ATTR_IDMAP | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | ro,
        userns,
    )?;
    Ok(fd)
}

/// A detached, read-only clone of what is at `path` (a folder or a file), idmapped like
/// [`idmapped_clone`] where its file system allows, else as it is (its files then show as owned by
/// nobody, and stay readable by everyone their mode lets read).
pub fn readonly_clone(path: &Path, userns: RawFd) -> io::Result<OwnedFd> {
    let fd = clone_tree(path)?;
    let plain = MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV;
    if set_mount_attr(&fd, path, plain | MOUNT_ATTR_IDMAP, userns).is_err() {
        set_mount_attr(&fd, path, plain, 0)?;
    }
    Ok(fd)
}

/// A detached clone of what is at `path` (`open_tree(OPEN_TREE_CLONE)`, the mounts below left out).
fn clone_tree(path: &Path) -> io::Result<OwnedFd> {
    use std::os::fd::FromRawFd;
    let path_c = cstr(path)?;
    // SAFETY: open_tree reads a live path; the descriptor it returns is owned below.
    let fd = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            libc::AT_FDCWD,
            path_c.as_ptr(),
            OPEN_TREE_CLONE | libc::O_CLOEXEC as libc::c_uint,
        )
    };
    check(fd, "cannot clone the mount of", path)?;
    // SAFETY: a fresh descriptor, owned by nothing else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

/// Sets mount attributes on a detached mount (`userns` is read only with `MOUNT_ATTR_IDMAP`).
fn set_mount_attr(fd: &OwnedFd, path: &Path, attr_set: u64, userns: RawFd) -> io::Result<()> {
    let attr = MountAttr {
        attr_set,
        attr_clr: 0,
        propagation: 0,
        userns_fd: userns as u64,
    };
    // SAFETY: mount_setattr on the descriptor itself (AT_EMPTY_PATH) with a MountAttr of the size
    // given.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    check(rc, "cannot set the mount attributes of", path)
}

fn attach(fd: &OwnedFd, target: &Path) -> io::Result<()> {
    let target_c = cstr(target)?;
    let empty = c"";
    // SAFETY: move_mount of a detached mount (the descriptor) onto a live path.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            fd.as_raw_fd(),
            empty.as_ptr(),
            libc::AT_FDCWD,
            target_c.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH,
        )
    };
    check(rc, "cannot attach a mount on", target)
}

fn mkdir_all(path: &Path, mode: u32) -> io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(mode)
        .create(path)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot create {}: {e}", path.display())))
}

/// Makes a mount point like `source`: a folder for a folder, an empty file for anything else.
fn make_target(source: &Path, target: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(target).is_ok() {
        return Ok(());
    }
    if std::fs::metadata(source).is_ok_and(|m| m.is_dir()) {
        mkdir_all(target, 0o755)
    } else {
        if let Some(parent) = target.parent() {
            mkdir_all(parent, 0o755)?;
        }
        std::fs::File::create(target).map(drop).map_err(|e| {
            io::Error::new(e.kind(), format!("cannot create {}: {e}", target.display()))
        })
    }
}

/// Carries out one step; a warning for what was done differently than asked.
pub fn apply(op: &Op, fds: &[OwnedFd]) -> io::Result<Option<String>> {
    match op {
        Op::Layer { target, size } => {
            mkdir_all(target, 0o755)?;
            let data = match size {
                Some(bytes) => format!("mode=755,size={bytes}"),
                None => "mode=755".to_string(),
            };
            mount(
                "tmpfs",
                target,
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(&data),
            )?;
            if !keeps_user_xattrs(target) {
                // SAFETY: unmounts the tmpfs just mounted; the folder below takes its place.
                let rc = unsafe { libc::umount2(cstr(target)?.as_ptr(), 0) };
                check(rc as libc::c_long, "cannot unmount", target)?;
            }
        }
        Op::File {
            path,
            text,
            mode,
            uid,
            gid,
        } => {
            use std::io::Write;
            use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
            if let Some(parent) = path.parent() {
                mkdir_all(parent, 0o755)?;
            }
            let mut file = std::fs::OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(*mode)
                .open(path)
                .map_err(|e| {
                    io::Error::new(e.kind(), format!("cannot write {}: {e}", path.display()))
                })?;
            file.write_all(text.as_bytes())?;
            file.set_permissions(std::fs::Permissions::from_mode(*mode))?;
            // An owner the build's user namespace does not map stays the build's root.
            let _ = std::os::unix::fs::fchown(&file, Some(*uid), Some(*gid));
        }
        Op::Hide {
            upper,
            lower,
            path,
            dir,
            mode,
            uid,
            gid,
        } => match hide(upper, lower, path, *dir, *mode, (*uid, *gid)) {
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            other => other?,
        },
        Op::Tmpfs {
            target,
            mode,
            size_mib,
        } => {
            mkdir_all(target, 0o755)?;
            let mut data = format!("mode={mode:o}");
            if *size_mib > 0 {
                data.push_str(&format!(",size={size_mib}m"));
            }
            mount(
                "tmpfs",
                target,
                "tmpfs",
                libc::MS_NOSUID | libc::MS_NODEV,
                Some(&data),
            )?;
        }
        Op::Dir { path, mode } => {
            mkdir_all(path, *mode)?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(*mode))?;
        }
        Op::Symlink { path, to } => {
            if let Some(parent) = path.parent() {
                mkdir_all(parent, 0o755)?;
            }
            std::os::unix::fs::symlink(to, path).map_err(|e| {
                io::Error::new(e.kind(), format!("cannot link {}: {e}", path.display()))
            })?;
        }
        Op::Attach { fd, target } => {
            let fd = fds.get(*fd).ok_or_else(|| {
                io::Error::other(format!("no mount was passed for {}", target.display()))
            })?;
            // A file is mounted on a file, a folder on a folder.
            if std::fs::File::from(fd.try_clone()?).metadata()?.is_dir() {
                mkdir_all(target, 0o755)?;
            } else {
                if let Some(parent) = target.parent() {
                    mkdir_all(parent, 0o755)?;
                }
                std::fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(false)
                    .open(target)?;
            }
            attach(fd, target)?;
        }
        Op::Overlay {
            lower,
            upper,
            work,
            target,
        } => {
            mkdir_all(target, 0o755)?;
            let data = format!(
                "lowerdir={},upperdir={},workdir={},userxattr",
                lower.display(),
                upper.display(),
                work.display()
            );
            if let Err(e) = mount("overlay", target, "overlay", 0, Some(&data)) {
                bind(lower, target)?;
                setattr(
                    target,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                )?;
                return Ok(Some(format!(
                    "{} is read-only in the build: the kernel refused an overlay there ({e})",
                    lower.display()
                )));
            }
        }
        Op::Bind {
            source,
            target,
            readonly,
            optional,
        } => {
            if *optional && std::fs::symlink_metadata(source).is_err() {
                return Ok(None);
            }
            make_target(source, target)?;
            bind(source, target)?;
            if *readonly {
                setattr(
                    target,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                )?;
            }
        }
        Op::Proc { target } => {
            mkdir_all(target, 0o555)?;
            mount(
                "proc",
                target,
                "proc",
                libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                None,
            )?;
        }
        Op::Sysfs { target } => {
            mkdir_all(target, 0o555)?;
            let flags = libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC;
            if mount("sysfs", target, "sysfs", flags, None).is_err() {
                bind(Path::new("/sys"), target)?;
                setattr(
                    target,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                )?;
            }
        }
        Op::Devpts { target } => {
            mkdir_all(target, 0o755)?;
            mount(
                "devpts",
                target,
                "devpts",
                libc::MS_NOSUID | libc::MS_NOEXEC,
                Some("newinstance,ptmxmode=0666,mode=0620"),
            )?;
        }
        Op::Mask { target } => match std::fs::symlink_metadata(target) {
            Err(_) => {}
            Ok(meta) if meta.is_dir() => {
                mount(
                    "tmpfs",
                    target,
                    "tmpfs",
                    libc::MS_RDONLY | libc::MS_NOSUID | libc::MS_NODEV | libc::MS_NOEXEC,
                    Some("size=0,mode=0"),
                )?;
            }
            Ok(_) => bind(Path::new("/dev/null"), target)?,
        },
        Op::Readonly { target } => {
            if std::fs::symlink_metadata(target).is_ok() {
                bind(target, target)?;
                setattr(
                    target,
                    MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV,
                )?;
            }
        }
    }
    Ok(None)
}

/// Whether a folder's file system keeps `user.*` extended attributes (overlay's `userxattr` mode
/// stores whiteouts and opaque folders in them).
fn keeps_user_xattrs(dir: &Path) -> bool {
    let Ok(path) = cstr(dir) else { return false };
    let name = c"user.kiln.probe";
    // SAFETY: setxattr and removexattr read a live path, a NUL-terminated name and a 1-byte value.
    unsafe {
        libc::setxattr(path.as_ptr(), name.as_ptr(), b"y".as_ptr().cast(), 1, 0) == 0
            && libc::removexattr(path.as_ptr(), name.as_ptr()) == 0
    }
}

/// Puts the stand-in for `lower/rel` in `upper/rel` (see [`Op::Hide`]).
fn hide(
    upper: &Path,
    lower: &Path,
    rel: &Path,
    dir: bool,
    mode: u32,
    owner: (u32, u32),
) -> io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let chown = |path: &Path, (uid, gid): (u32, u32)| match std::os::unix::fs::lchown(
        path,
        Some(uid),
        Some(gid),
    ) {
        // An owner the build's user namespace does not map: the build's root keeps it.
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => Ok(()),
        other => other,
    };
    let mut parents: Vec<&Path> = rel
        .ancestors()
        .skip(1)
        .filter(|p| !p.as_os_str().is_empty())
        .collect();
    parents.reverse();
    for parent in parents {
        let dest = upper.join(parent);
        if dest.is_dir() {
            continue;
        }
        let meta = std::fs::symlink_metadata(lower.join(parent))?;
        if !meta.is_dir() {
            return Err(io::ErrorKind::NotFound.into());
        }
        std::fs::create_dir(&dest)?;
        std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        chown(&dest, (meta.uid(), meta.gid()))?;
    }
    // What the host no longer has (a temp folder removed since the scan) needs no stand-in.
    std::fs::symlink_metadata(lower.join(rel))?;
    let dest = upper.join(rel);
    if dir {
        std::fs::create_dir(&dest)?;
        let dest_c = cstr(&dest)?;
        // SAFETY: setxattr reads a live path, a NUL-terminated name and a 1-byte value.
        let rc = unsafe {
            libc::setxattr(
                dest_c.as_ptr(),
                c"user.overlay.opaque".as_ptr(),
                b"y".as_ptr().cast(),
                1,
                0,
            )
        };
        check(rc as libc::c_long, "cannot make opaque", &dest)?;
    } else {
        std::fs::write(&dest, b"")?;
    }
    std::fs::set_permissions(&dest, std::fs::Permissions::from_mode(mode))?;
    chown(&dest, owner)
}

/// Makes `root` the root of the calling process's mount namespace and drops the old one.
pub fn pivot(root: &Path) -> io::Result<()> {
    std::env::set_current_dir(root)?;
    let dot = c".";
    // SAFETY: pivot_root(".", ".") stacks the old root on the new one; both are live strings.
    let rc = unsafe { libc::syscall(libc::SYS_pivot_root, dot.as_ptr(), dot.as_ptr()) };
    check(rc, "cannot pivot to", root)?;
    // SAFETY: detaches the old root, which now sits on top of ".".
    let rc = unsafe { libc::umount2(dot.as_ptr(), libc::MNT_DETACH) };
    check(
        rc as libc::c_long,
        "cannot detach the host's root from",
        root,
    )?;
    std::env::set_current_dir("/")
}

/// Stops mounts from propagating back to the host.
pub fn make_private() -> io::Result<()> {
    let root = c"/";
    let none = c"none";
    // SAFETY: changes the propagation of every mount in this (new) mount namespace.
    let rc = unsafe {
        libc::mount(
            none.as_ptr(),
            root.as_ptr(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    check(rc as libc::c_long, "cannot make private", Path::new("/"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout_plan(idmapped: bool) -> Plan {
        let top = vec![
            ("bin".to_string(), TopKind::Symlink),
            ("etc".to_string(), TopKind::Dir),
            ("home".to_string(), TopKind::Dir),
            ("proc".to_string(), TopKind::Dir),
            ("root".to_string(), TopKind::Dir),
            ("tmp".to_string(), TopKind::Dir),
            ("usr".to_string(), TopKind::Dir),
            ("we,ird".to_string(), TopKind::Dir),
        ];
        let points = vec![
            PathBuf::from("/"),
            PathBuf::from("/proc"),
            PathBuf::from("/usr/local"),
        ];
        let writable = vec![
            PathBuf::from("/tmp/kiln-build-x/src"),
            PathBuf::from("/srv/out"),
        ];
        let hide = vec![
            PathBuf::from("/etc/kiln"),
            PathBuf::from("/root"),
            PathBuf::from("/srv/out/.secrets"),
        ];
        let expose = vec![PathBuf::from("/root/.cargo/bin")];
        let protect = vec![PathBuf::from("/srv/out/.git")];
        let private = vec![
            Private {
                path: "/etc/ssl/private".into(),
                dir: true,
                mode: 0o700,
                uid: 0,
                gid: 0,
            },
            Private {
                path: "/etc/shadow".into(),
                dir: false,
                mode: 0o640,
                uid: 0,
                gid: 42,
            },
        ];
        let layer_files = vec![LayerFile {
            path: "/etc/shadow".into(),
            text: "root:*:19000:0:99999:7:::\n".into(),
            mode: 0o640,
            uid: 0,
            gid: 42,
        }];
        Layout {
            scratch: Path::new("/tmp/kiln-build-x"),
            idmapped,
            writable: &writable,
            expose: &expose,
            toolchains: &[],
            protect: &protect,
            hide: &hide,
            top: &top,
            mount_points: &points,
            own_network: true,
            layer_size: Some(1 << 30),
            private: &private,
            layer_files: &layer_files,
        }
        .plan()
    }

    #[test]
    fn host_folders_are_overlays_and_homes_are_the_builds_own() {
        let plan = layout_plan(true);
        let r = Path::new("/tmp/kiln-build-x/root");
        assert!(plan.before.contains(&Op::Overlay {
            lower: "/tmp/kiln-build-x/mnt/root/usr".into(),
            upper: "/tmp/kiln-build-x/mnt/scratch/layers/upper/usr".into(),
            work: "/tmp/kiln-build-x/mnt/scratch/layers/work/usr".into(),
            target: r.join("usr"),
        }));
        // The host's homes and /tmp are never overlaid: the build has its own.
        for own in ["root", "home", "tmp", "proc"] {
            assert!(
                !plan
                    .before
                    .iter()
                    .any(|op| matches!(op, Op::Overlay { target, .. } if target == &r.join(own))),
                "{own} must not be the host's"
            );
        }
        assert!(plan.before.contains(&Op::Bind {
            source: "/tmp/kiln-build-x/mnt/scratch/home".into(),
            target: r.join("root"),
            readonly: false,
            optional: false,
        }));
        // A name overlay's options cannot carry is bound read-only instead.
        assert!(plan.before.iter().any(
            |op| matches!(op, Op::Bind { target, readonly: true, .. } if target == &r.join("we,ird"))
        ));
        // A file system mounted below an overlaid folder is bound read-only.
        assert!(plan.before.contains(&Op::Bind {
            source: "/usr/local".into(),
            target: r.join("usr/local"),
            readonly: true,
            optional: true,
        }));
        assert!(plan.before.contains(&Op::Mask {
            target: r.join("etc/kiln")
        }));
        // The build's own HOME is not masked for being kiln's HOME; a hidden file inside a
        // writable folder is.
        assert!(!plan.before.contains(&Op::Mask {
            target: r.join("root")
        }));
        assert!(plan.before.contains(&Op::Mask {
            target: r.join("srv/out/.secrets")
        }));
    }

    #[test]
    fn the_layers_start_with_their_stand_ins_before_their_overlays() {
        let plan = layout_plan(true);
        let position = |wanted: &dyn Fn(&Op) -> bool| plan.before.iter().position(wanted);
        let layer = position(&|op| {
            *op == Op::Layer {
                target: "/tmp/kiln-build-x/mnt/scratch/layers".into(),
                size: Some(1 << 30),
            }
        })
        .expect("the layers' folder");
        let etc =
            position(&|op| matches!(op, Op::Overlay { target, .. } if target.ends_with("etc")))
                .expect("/etc is overlaid");
        let upper = PathBuf::from("/tmp/kiln-build-x/mnt/scratch/layers/upper/etc");
        let hidden = position(&|op| {
            *op == Op::Hide {
                upper: upper.clone(),
                lower: "/tmp/kiln-build-x/mnt/root/etc".into(),
                path: "ssl/private".into(),
                dir: true,
                mode: 0o700,
                uid: 0,
                gid: 0,
            }
        })
        .expect("a stand-in for /etc/ssl/private");
        let shadow = position(&|op| {
            matches!(op, Op::File { path, text, gid: 42, .. }
                if *path == upper.join("shadow") && !text.contains('$'))
        })
        .expect("the password-less shadow");
        assert!(layer < hidden && hidden < etc && shadow < etc);
        // The shadow copy stands in for the host's: no empty stand-in over it.
        assert!(
            !plan
                .before
                .iter()
                .any(|op| matches!(op, Op::Hide { path, .. } if path.ends_with("shadow")))
        );
    }

    #[test]
    fn toolchains_are_copy_on_write_once_each() {
        let top = vec![("usr".to_string(), TopKind::Dir)];
        let toolchains = vec![
            PathBuf::from("/home/u/.pyenv"),
            PathBuf::from("/home/u/.pyenv/shims"),
            PathBuf::from("/home/u/we,ird"),
        ];
        let plan = |idmapped: bool| {
            Layout {
                scratch: Path::new("/tmp/kiln-build-x"),
                idmapped,
                writable: &[],
                expose: &[],
                toolchains: &toolchains,
                protect: &[],
                hide: &[],
                top: &top,
                mount_points: &[],
                own_network: true,
                layer_size: None,
                private: &[],
                layer_files: &[],
            }
            .plan()
        };
        let r = Path::new("/tmp/kiln-build-x/root");
        let overlays_at = |plan: &Plan, path: &str| {
            plan.before
                .iter()
                .filter(|op| matches!(op, Op::Overlay { target, .. } if *target == r.join(path)))
                .count()
        };
        // As root: each is attached where the launcher reaches it, and overlaid once: the
        // pyenv's shims are in its overlay already.
        let root = plan(true);
        assert!(root.before.contains(&Op::Overlay {
            lower: "/tmp/kiln-build-x/mnt/scratch/mnt/toolchain/0".into(),
            upper: "/tmp/kiln-build-x/mnt/scratch/layers/toolchain/0/upper".into(),
            work: "/tmp/kiln-build-x/mnt/scratch/layers/toolchain/0/work".into(),
            target: r.join("home/u/.pyenv"),
        }));
        assert_eq!(overlays_at(&root, "home/u/.pyenv/shims"), 0);
        assert!(root.before.contains(&Op::Attach {
            fd: FD_SCRATCH + 1 + 1,
            target: "/tmp/kiln-build-x/mnt/scratch/mnt/toolchain/1".into(),
        }));
        // Rootless, the host's path is the lower: one overlay's options cannot carry is shown
        // read-only instead.
        let rootless = plan(false);
        assert_eq!(overlays_at(&rootless, "home/u/.pyenv"), 1);
        assert_eq!(overlays_at(&rootless, "home/u/we,ird"), 0);
        assert!(rootless.before.contains(&Op::Bind {
            source: "/home/u/we,ird".into(),
            target: r.join("home/u/we,ird"),
            readonly: true,
            optional: true,
        }));
    }

    #[test]
    fn a_stand_in_is_empty_with_the_hosts_mode_below_folders_like_the_hosts() {
        use std::os::unix::fs::{MetadataExt, PermissionsExt};
        let (lower, upper) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let dir = lower.path().join("app/keys");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o750)).unwrap();
        std::fs::write(dir.join("secret"), "s3cret").unwrap();
        std::fs::create_dir(dir.join("vault")).unwrap();
        let me = std::fs::metadata(lower.path()).unwrap();
        let hide = |rel: &str, dir: bool, mode: u32| Op::Hide {
            upper: upper.path().into(),
            lower: lower.path().into(),
            path: rel.into(),
            dir,
            mode,
            uid: me.uid(),
            gid: me.gid(),
        };
        apply(&hide("app/keys/secret", false, 0o600), &[]).unwrap();
        apply(&hide("app/keys/vault", true, 0o700), &[]).unwrap();
        let keys = std::fs::metadata(upper.path().join("app/keys")).unwrap();
        assert_eq!(keys.mode() & 0o7777, 0o750);
        let secret = upper.path().join("app/keys/secret");
        assert_eq!(std::fs::read(&secret).unwrap(), b"");
        assert_eq!(std::fs::metadata(&secret).unwrap().mode() & 0o7777, 0o600);
        let vault = cstr(&upper.path().join("app/keys/vault")).unwrap();
        let mut value = [0u8; 4];
        // SAFETY: getxattr writes at most `value.len()` bytes into a live buffer.
        let n = unsafe {
            libc::getxattr(
                vault.as_ptr(),
                c"user.overlay.opaque".as_ptr(),
                value.as_mut_ptr().cast(),
                value.len(),
            )
        };
        assert_eq!(
            &value[..n.max(0) as usize],
            b"y",
            "the folder hides the host's contents"
        );
        // What the host no longer has (a temp folder removed since the scan) needs no stand-in.
        apply(&hide("gone/secret", false, 0o600), &[]).expect("a vanished file is no error");
        assert!(!upper.path().join("gone").exists());
    }

    #[test]
    fn writable_folders_come_through_the_scratch_mount_or_their_own() {
        let plan = layout_plan(true);
        let r = Path::new("/tmp/kiln-build-x/root");
        assert!(plan.before.contains(&Op::Bind {
            source: "/tmp/kiln-build-x/mnt/scratch/src".into(),
            target: r.join("tmp/kiln-build-x/src"),
            readonly: false,
            optional: false,
        }));
        assert!(plan.before.contains(&Op::Attach {
            fd: 2,
            target: r.join("srv/out"),
        }));
        let rootless = layout_plan(false);
        assert!(rootless.before.contains(&Op::Bind {
            source: "/srv/out".into(),
            target: r.join("srv/out"),
            readonly: false,
            optional: false,
        }));
        assert!(
            !rootless
                .before
                .iter()
                .any(|op| matches!(op, Op::Attach { .. }))
        );
        // A protected folder inside a writable one is bound read-only over it, after it.
        let protected = Op::Bind {
            source: r.join("srv/out/.git"),
            target: r.join("srv/out/.git"),
            readonly: true,
            optional: true,
        };
        let at = |op: &Op| plan.before.iter().position(|o| o == op);
        let writable = at(&Op::Attach {
            fd: 2,
            target: r.join("srv/out"),
        });
        assert!(at(&protected) > writable && writable.is_some());
    }

    #[test]
    fn proc_parts_that_reach_the_kernel_are_hidden() {
        let plan = layout_plan(false);
        assert!(plan.before.contains(&Op::Proc {
            target: "/tmp/kiln-build-x/root/proc".into()
        }));
        assert!(plan.after.contains(&Op::Mask {
            target: "/proc/sysrq-trigger".into()
        }));
        assert!(plan.after.contains(&Op::Readonly {
            target: "/proc/sys".into()
        }));
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape("/mnt/a\\040b"), Path::new("/mnt/a b"));
        assert_eq!(unescape("/plain"), Path::new("/plain"));
    }
}
