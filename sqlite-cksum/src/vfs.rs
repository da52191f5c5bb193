//! The VFS shim itself: SQLite's C callbacks, forwarding to the platform's default VFS.
//!
//! SQLite allocates `szOsFile` bytes for every file it opens and hands them to `xOpen`. For a main
//! database file this shim lays a [`ShimFile`] at the start of that block and the default VFS's own
//! file right after it; every method but `xRead`, `xWrite` and `xFetch` forwards to that file. Other
//! files (journals, the write-ahead log, temporary files) are opened by the default VFS in the block
//! directly and never come back here.

use crate::{RESERVE, is_page, page_checksum};
use libsqlite3_sys as ffi;
use std::ffi::{c_char, c_int, c_void};
use std::ptr;
use std::sync::atomic::{AtomicBool, AtomicPtr, Ordering};

/// The default VFS this one forwards to, set once by [`register`].
static REAL: AtomicPtr<ffi::sqlite3_vfs> = AtomicPtr::new(ptr::null_mut());

/// One open main database file.
#[repr(C)]
struct ShimFile {
    /// What SQLite sees: `pMethods` points at [`METHODS`].
    base: ffi::sqlite3_file,
    /// The default VFS's file, inside the same allocation right after this header.
    real: *mut ffi::sqlite3_file,
    /// Whether the file reserves [`RESERVE`] bytes per page, read from its header whenever page 1
    /// passes through.
    on: AtomicBool,
}

const HEADER: usize = std::mem::size_of::<ShimFile>();

const _: () = assert!(HEADER.is_multiple_of(8), "the real file must stay 8-byte aligned");

/// The reserved-bytes field of a database header (`None` when `header` is not one).
pub(crate) fn header_reserve(header: &[u8]) -> Option<u8> {
    (header.len() >= 100 && &header[..16] == b"SQLite format 3\0").then(|| header[20])
}

fn real_vfs() -> *mut ffi::sqlite3_vfs {
    REAL.load(Ordering::Acquire)
}

/// Registers the shim over the default VFS. Returns SQLite's result code on failure.
pub(crate) fn register() -> Result<(), c_int> {
    // SAFETY: sqlite3_vfs_find accepts a null name (the default VFS) and initialises SQLite first.
    let real = unsafe { ffi::sqlite3_vfs_find(ptr::null()) };
    if real.is_null() {
        return Err(ffi::SQLITE_ERROR);
    }
    REAL.store(real, Ordering::Release);
    // SAFETY: `real` is SQLite's registered default VFS, which lives as long as the process.
    let (os_file, max_path) = unsafe { ((*real).szOsFile, (*real).mxPathname) };
    let vfs = Box::leak(Box::new(ffi::sqlite3_vfs {
        iVersion: 2,
        szOsFile: HEADER as c_int + os_file,
        mxPathname: max_path,
        pNext: ptr::null_mut(),
        zName: c"cordon-cksum".as_ptr(),
        pAppData: ptr::null_mut(),
        xOpen: Some(x_open),
        xDelete: Some(x_delete),
        xAccess: Some(x_access),
        xFullPathname: Some(x_full_pathname),
        xDlOpen: Some(x_dl_open),
        xDlError: Some(x_dl_error),
        xDlSym: Some(x_dl_sym),
        xDlClose: Some(x_dl_close),
        xRandomness: Some(x_randomness),
        xSleep: Some(x_sleep),
        xCurrentTime: Some(x_current_time),
        xGetLastError: Some(x_get_last_error),
        xCurrentTimeInt64: Some(x_current_time_int64),
        xSetSystemCall: None,
        xGetSystemCall: None,
        xNextSystemCall: None,
    }));
    // SAFETY: the struct is leaked, so it outlives every connection; SQLite copies nothing from it.
    let rc = unsafe { ffi::sqlite3_vfs_register(vfs, 0) };
    if rc == ffi::SQLITE_OK { Ok(()) } else { Err(rc) }
}

/// `sqlite3_file_control(db, "main", SQLITE_FCNTL_RESERVE_BYTES, n)`: sets the reserved bytes per
/// page (0..=255) or, with -1, reads them.
pub(crate) fn reserve_bytes(db: *mut ffi::sqlite3, n: c_int) -> Result<c_int, c_int> {
    let mut value = n;
    // SAFETY: `db` is a live connection handle held locked by the caller; the argument is an int.
    let rc = unsafe {
        ffi::sqlite3_file_control(
            db,
            c"main".as_ptr(),
            ffi::SQLITE_FCNTL_RESERVE_BYTES,
            (&raw mut value).cast::<c_void>(),
        )
    };
    if rc == ffi::SQLITE_OK { Ok(value) } else { Err(rc) }
}

static METHODS: ffi::sqlite3_io_methods = ffi::sqlite3_io_methods {
    iVersion: 3,
    xClose: Some(x_close),
    xRead: Some(x_read),
    xWrite: Some(x_write),
    xTruncate: Some(x_truncate),
    xSync: Some(x_sync),
    xFileSize: Some(x_file_size),
    xLock: Some(x_lock),
    xUnlock: Some(x_unlock),
    xCheckReservedLock: Some(x_check_reserved_lock),
    xFileControl: Some(x_file_control),
    xSectorSize: Some(x_sector_size),
    xDeviceCharacteristics: Some(x_device_characteristics),
    xShmMap: Some(x_shm_map),
    xShmLock: Some(x_shm_lock),
    xShmBarrier: Some(x_shm_barrier),
    xShmUnmap: Some(x_shm_unmap),
    xFetch: Some(x_fetch),
    xUnfetch: Some(x_unfetch),
};

/// The header of a file this shim opened.
///
/// # Safety
/// `file` must be a file whose `pMethods` is [`METHODS`], that is one [`x_open`] initialised.
unsafe fn shim<'a>(file: *mut ffi::sqlite3_file) -> &'a ShimFile {
    // SAFETY: per the contract, the block starts with an initialised ShimFile.
    unsafe { &*file.cast::<ShimFile>() }
}

/// The default VFS's methods for a file this shim opened, and that file.
///
/// # Safety
/// As for [`shim`].
unsafe fn inner<'a>(file: *mut ffi::sqlite3_file) -> (&'a ffi::sqlite3_io_methods, *mut ffi::sqlite3_file) {
    // SAFETY: per the contract; the real file was opened successfully, so its pMethods is set.
    unsafe {
        let real = shim(file).real;
        (&*(*real).pMethods, real)
    }
}

unsafe extern "C" fn x_open(
    _vfs: *mut ffi::sqlite3_vfs,
    name: ffi::sqlite3_filename,
    file: *mut ffi::sqlite3_file,
    flags: c_int,
    out_flags: *mut c_int,
) -> c_int {
    let real_vfs = real_vfs();
    // SAFETY: SQLite hands a block of szOsFile bytes (HEADER + the default VFS's size), 8-aligned.
    unsafe {
        let open = (*real_vfs).xOpen.expect("every VFS has xOpen");
        if flags & ffi::SQLITE_OPEN_MAIN_DB == 0 {
            return open(real_vfs, name, file, flags, out_flags);
        }
        (*file).pMethods = ptr::null();
        let real = file.cast::<u8>().add(HEADER).cast::<ffi::sqlite3_file>();
        (*real).pMethods = ptr::null();
        let rc = open(real_vfs, name, real, flags, out_flags);
        if rc != ffi::SQLITE_OK {
            // SQLite closes only what reports methods; ours stay null, so close the real file here.
            if let Some(close) = (*real).pMethods.as_ref().and_then(|m| m.xClose) {
                close(real);
            }
            return rc;
        }
        ptr::write(
            file.cast::<ShimFile>(),
            ShimFile { base: ffi::sqlite3_file { pMethods: &METHODS }, real, on: AtomicBool::new(false) },
        );
        let mut header = [0u8; 100];
        let read = (*(*real).pMethods).xRead.expect("every file has xRead");
        if read(real, header.as_mut_ptr().cast(), 100, 0) == ffi::SQLITE_OK {
            shim(file).on.store(header_reserve(&header) == Some(RESERVE), Ordering::Relaxed);
        }
        ffi::SQLITE_OK
    }
}

/// Notes the reserved-bytes field whenever page 1 (or its header) passes through.
fn note_header(file: &ShimFile, bytes: &[u8], offset: i64) {
    if offset == 0
        && let Some(reserve) = header_reserve(bytes)
    {
        file.on.store(reserve == RESERVE, Ordering::Relaxed);
    }
}

unsafe extern "C" fn x_read(
    file: *mut ffi::sqlite3_file,
    buf: *mut c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this only on files x_open initialised, with `amt` writable bytes at `buf`.
    unsafe {
        let (methods, real) = inner(file);
        let rc = methods.xRead.expect("every file has xRead")(real, buf, amt, offset);
        if rc != ffi::SQLITE_OK {
            return rc;
        }
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), amt as usize);
        let me = shim(file);
        note_header(me, bytes, offset);
        if me.on.load(Ordering::Relaxed) && is_page(bytes.len(), offset) {
            let (_, stored) = bytes.split_at(bytes.len() - RESERVE as usize);
            if stored != page_checksum(bytes) {
                return ffi::SQLITE_IOERR_DATA;
            }
        }
        ffi::SQLITE_OK
    }
}

unsafe extern "C" fn x_write(
    file: *mut ffi::sqlite3_file,
    buf: *const c_void,
    amt: c_int,
    offset: i64,
) -> c_int {
    // SAFETY: SQLite calls this only on files x_open initialised, with `amt` readable bytes at `buf`.
    unsafe {
        let (methods, real) = inner(file);
        let write = methods.xWrite.expect("every file has xWrite");
        let bytes = std::slice::from_raw_parts(buf.cast::<u8>(), amt as usize);
        let me = shim(file);
        note_header(me, bytes, offset);
        if !(me.on.load(Ordering::Relaxed) && is_page(bytes.len(), offset)) {
            return write(real, buf, amt, offset);
        }
        // The caller's buffer is SQLite's cached page: the checksum goes into a copy.
        let mut page = bytes.to_vec();
        let sum = page_checksum(&page);
        let at = page.len() - RESERVE as usize;
        page[at..].copy_from_slice(&sum);
        write(real, page.as_ptr().cast(), amt, offset)
    }
}

unsafe extern "C" fn x_fetch(
    file: *mut ffi::sqlite3_file,
    offset: i64,
    amt: c_int,
    pp: *mut *mut c_void,
) -> c_int {
    // SAFETY: as for x_read; `pp` is SQLite's out-pointer.
    unsafe {
        let (methods, real) = inner(file);
        match methods.xFetch {
            // Memory-mapped pages would bypass x_read's check, so a checksummed file has none.
            Some(fetch) if !shim(file).on.load(Ordering::Relaxed) => fetch(real, offset, amt, pp),
            _ => {
                *pp = ptr::null_mut();
                ffi::SQLITE_OK
            }
        }
    }
}

unsafe extern "C" fn x_close(file: *mut ffi::sqlite3_file) -> c_int {
    // SAFETY: called once per file x_open initialised; ShimFile holds nothing to drop.
    unsafe {
        let (methods, real) = inner(file);
        methods.xClose.expect("every file has xClose")(real)
    }
}

/// Forwarding methods: each calls the default VFS's method of the same name on the real file.
macro_rules! forward {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(file: *mut ffi::sqlite3_file $(, $arg: $ty)*) -> $ret {
            // SAFETY: SQLite calls this only on files x_open initialised; arguments pass unchanged.
            unsafe {
                let (methods, real) = inner(file);
                match methods.$field {
                    Some(f) => f(real $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

forward!(x_truncate, xTruncate, (size: i64) -> c_int, ffi::SQLITE_IOERR);
forward!(x_sync, xSync, (flags: c_int) -> c_int, ffi::SQLITE_IOERR);
forward!(x_file_size, xFileSize, (size: *mut i64) -> c_int, ffi::SQLITE_IOERR);
forward!(x_lock, xLock, (level: c_int) -> c_int, ffi::SQLITE_IOERR);
forward!(x_unlock, xUnlock, (level: c_int) -> c_int, ffi::SQLITE_IOERR);
forward!(x_check_reserved_lock, xCheckReservedLock, (out: *mut c_int) -> c_int, ffi::SQLITE_IOERR);
forward!(x_file_control, xFileControl, (op: c_int, arg: *mut c_void) -> c_int, ffi::SQLITE_NOTFOUND);
forward!(x_sector_size, xSectorSize, () -> c_int, 4096);
forward!(x_device_characteristics, xDeviceCharacteristics, () -> c_int, 0);
forward!(x_shm_map, xShmMap, (page: c_int, size: c_int, extend: c_int, pp: *mut *mut c_void) -> c_int, ffi::SQLITE_IOERR);
forward!(x_shm_lock, xShmLock, (offset: c_int, n: c_int, flags: c_int) -> c_int, ffi::SQLITE_IOERR);
forward!(x_shm_barrier, xShmBarrier, () -> (), ());
forward!(x_shm_unmap, xShmUnmap, (delete: c_int) -> c_int, ffi::SQLITE_OK);
forward!(x_unfetch, xUnfetch, (offset: i64, p: *mut c_void) -> c_int, ffi::SQLITE_OK);

/// Forwarding VFS methods: each calls the default VFS's method of the same name with that VFS.
macro_rules! forward_vfs {
    ($name:ident, $field:ident, ($($arg:ident: $ty:ty),*) -> $ret:ty, $missing:expr) => {
        unsafe extern "C" fn $name(_vfs: *mut ffi::sqlite3_vfs $(, $arg: $ty)*) -> $ret {
            let real = real_vfs();
            // SAFETY: `real` is the registered default VFS; arguments pass unchanged.
            unsafe {
                match (*real).$field {
                    Some(f) => f(real $(, $arg)*),
                    None => $missing,
                }
            }
        }
    };
}

type DlSym = Option<unsafe extern "C" fn(*mut ffi::sqlite3_vfs, *mut c_void, *const c_char)>;

forward_vfs!(x_delete, xDelete, (name: *const c_char, sync_dir: c_int) -> c_int, ffi::SQLITE_IOERR_DELETE);
forward_vfs!(x_access, xAccess, (name: *const c_char, flags: c_int, out: *mut c_int) -> c_int, ffi::SQLITE_IOERR_ACCESS);
forward_vfs!(x_full_pathname, xFullPathname, (name: *const c_char, n: c_int, out: *mut c_char) -> c_int, ffi::SQLITE_CANTOPEN);
forward_vfs!(x_dl_open, xDlOpen, (name: *const c_char) -> *mut c_void, ptr::null_mut());
forward_vfs!(x_dl_error, xDlError, (n: c_int, out: *mut c_char) -> (), ());
forward_vfs!(x_dl_sym, xDlSym, (handle: *mut c_void, symbol: *const c_char) -> DlSym, None);
forward_vfs!(x_dl_close, xDlClose, (handle: *mut c_void) -> (), ());
forward_vfs!(x_randomness, xRandomness, (n: c_int, out: *mut c_char) -> c_int, 0);
forward_vfs!(x_sleep, xSleep, (micros: c_int) -> c_int, 0);
forward_vfs!(x_current_time, xCurrentTime, (out: *mut f64) -> c_int, ffi::SQLITE_ERROR);
forward_vfs!(x_get_last_error, xGetLastError, (n: c_int, out: *mut c_char) -> c_int, 0);
forward_vfs!(x_current_time_int64, xCurrentTimeInt64, (out: *mut i64) -> c_int, ffi::SQLITE_ERROR);
