//! Files and directories only their owner can open: backups hold the whole
//! database, the `sa` password hash and keys.
//!
//! On Unix that is the mode (0600 files, 0700 directories), set when they are
//! created. On Windows it is an ACL: one entry granting the current user full
//! control, protected from the parent's inherited entries, so neither other
//! users nor the Administrators' inherited access apply; a directory's entry
//! is inherited by what is created in it.

use std::io;
use std::path::Path;

/// Make `path` owner-only (a no-op on Unix, where the mode was set at creation).
pub fn restrict(path: &Path, is_dir: bool) -> io::Result<()> {
    #[cfg(windows)]
    {
        win::restrict(path, is_dir)
    }
    #[cfg(not(windows))]
    {
        let _ = (path, is_dir);
        Ok(())
    }
}

/// Whether `path` is owner-only: mode `0o600`/`0o700` and nothing for group
/// and others on Unix, a protected ACL with the owner alone on Windows.
pub fn is_private(path: &Path) -> io::Result<bool> {
    #[cfg(windows)]
    {
        win::is_private(path)
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        Ok(std::fs::metadata(path)?.permissions().mode() & 0o077 == 0)
    }
    #[cfg(not(any(windows, unix)))]
    {
        let _ = path;
        Ok(false)
    }
}

#[cfg(windows)]
#[allow(unsafe_code)]
mod win {
    //! The Win32 security calls, each checked; every pointer they hand out is
    //! freed with `LocalFree` (ACLs, descriptors) or lives in our buffer.

    use std::io;
    use std::os::windows::ffi::OsStrExt;
    use std::path::Path;

    use windows_sys::Win32::Foundation::{CloseHandle, ERROR_SUCCESS, HANDLE, LocalFree};
    use windows_sys::Win32::Security::Authorization::{
        EXPLICIT_ACCESS_W, GetNamedSecurityInfoW, SE_FILE_OBJECT, SET_ACCESS, SetEntriesInAclW,
        SetNamedSecurityInfoW, TRUSTEE_IS_SID, TRUSTEE_IS_USER, TRUSTEE_W,
    };
    use windows_sys::Win32::Security::{
        ACCESS_ALLOWED_ACE, ACL, ACL_SIZE_INFORMATION, AclSizeInformation,
        DACL_SECURITY_INFORMATION, EqualSid, GetAce, GetAclInformation,
        GetSecurityDescriptorControl, GetTokenInformation, NO_INHERITANCE,
        PROTECTED_DACL_SECURITY_INFORMATION, PSECURITY_DESCRIPTOR, PSID, SE_DACL_PROTECTED,
        SUB_CONTAINERS_AND_OBJECTS_INHERIT, TOKEN_QUERY, TOKEN_USER, TokenUser,
    };
    use windows_sys::Win32::Storage::FileSystem::FILE_ALL_ACCESS;
    use windows_sys::Win32::System::Threading::{GetCurrentProcess, OpenProcessToken};

    fn wide(path: &Path) -> Vec<u16> {
        path.as_os_str().encode_wide().chain(Some(0)).collect()
    }

    fn win_err(code: u32) -> io::Error {
        io::Error::from_raw_os_error(code as i32)
    }

    /// The current user's `TOKEN_USER`, in a buffer that owns the SID.
    struct UserSid {
        buf: Vec<u64>,
    }

    impl UserSid {
        fn current() -> io::Result<UserSid> {
            let mut token: HANDLE = std::ptr::null_mut();
            // SAFETY: a pseudo-handle for this process and an out-pointer.
            if unsafe { OpenProcessToken(GetCurrentProcess(), TOKEN_QUERY, &mut token) } == 0 {
                return Err(io::Error::last_os_error());
            }
            let mut len = 0u32;
            // SAFETY: asking for the size only (null buffer, zero length).
            unsafe { GetTokenInformation(token, TokenUser, std::ptr::null_mut(), 0, &mut len) };
            let mut buf = vec![0u64; (len as usize).div_ceil(8).max(1)];
            // SAFETY: `buf` holds at least `len` bytes, aligned for TOKEN_USER.
            let ok = unsafe {
                GetTokenInformation(token, TokenUser, buf.as_mut_ptr().cast(), len, &mut len)
            };
            let err = io::Error::last_os_error();
            // SAFETY: the token handle we opened above.
            unsafe { CloseHandle(token) };
            if ok == 0 {
                return Err(err);
            }
            Ok(UserSid { buf })
        }

        fn sid(&self) -> PSID {
            // SAFETY: the buffer holds a TOKEN_USER written by GetTokenInformation.
            unsafe { (*(self.buf.as_ptr().cast::<TOKEN_USER>())).User.Sid }
        }
    }

    pub fn restrict(path: &Path, is_dir: bool) -> io::Result<()> {
        let user = UserSid::current()?;
        let access = EXPLICIT_ACCESS_W {
            grfAccessPermissions: FILE_ALL_ACCESS,
            grfAccessMode: SET_ACCESS,
            grfInheritance: if is_dir {
                SUB_CONTAINERS_AND_OBJECTS_INHERIT
            } else {
                NO_INHERITANCE
            },
            Trustee: TRUSTEE_W {
                TrusteeForm: TRUSTEE_IS_SID,
                TrusteeType: TRUSTEE_IS_USER,
                ptstrName: user.sid().cast(),
                ..Default::default()
            },
        };
        let mut acl: *mut ACL = std::ptr::null_mut();
        // SAFETY: one entry, no old ACL; the new ACL is ours to LocalFree.
        let rc = unsafe { SetEntriesInAclW(1, &access, std::ptr::null(), &mut acl) };
        if rc != ERROR_SUCCESS {
            return Err(win_err(rc));
        }
        let name = wide(path);
        // SAFETY: a NUL-terminated path and the ACL built above.
        let rc = unsafe {
            SetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                acl,
                std::ptr::null(),
            )
        };
        // SAFETY: allocated by SetEntriesInAclW.
        unsafe { LocalFree(acl.cast()) };
        if rc != ERROR_SUCCESS {
            return Err(win_err(rc));
        }
        Ok(())
    }

    pub fn is_private(path: &Path) -> io::Result<bool> {
        let user = UserSid::current()?;
        let name = wide(path);
        let mut dacl: *mut ACL = std::ptr::null_mut();
        let mut sd: PSECURITY_DESCRIPTOR = std::ptr::null_mut();
        // SAFETY: out-pointers; the descriptor is ours to LocalFree and the
        // DACL points into it.
        let rc = unsafe {
            GetNamedSecurityInfoW(
                name.as_ptr(),
                SE_FILE_OBJECT,
                DACL_SECURITY_INFORMATION,
                std::ptr::null_mut(),
                std::ptr::null_mut(),
                &mut dacl,
                std::ptr::null_mut(),
                &mut sd,
            )
        };
        if rc != ERROR_SUCCESS {
            return Err(win_err(rc));
        }
        let result = (|| {
            let mut control = 0u16;
            let mut revision = 0u32;
            // SAFETY: the descriptor returned above.
            if unsafe { GetSecurityDescriptorControl(sd, &mut control, &mut revision) } == 0 {
                return Err(io::Error::last_os_error());
            }
            if dacl.is_null() {
                return Ok(false);
            }
            let mut info = ACL_SIZE_INFORMATION::default();
            // SAFETY: the DACL inside the descriptor; `info` is the right size.
            if unsafe {
                GetAclInformation(
                    dacl,
                    (&mut info as *mut ACL_SIZE_INFORMATION).cast(),
                    std::mem::size_of::<ACL_SIZE_INFORMATION>() as u32,
                    AclSizeInformation,
                )
            } == 0
            {
                return Err(io::Error::last_os_error());
            }
            if control & SE_DACL_PROTECTED == 0 || info.AceCount != 1 {
                return Ok(false);
            }
            let mut ace: *mut core::ffi::c_void = std::ptr::null_mut();
            // SAFETY: index 0 exists (AceCount is 1).
            if unsafe { GetAce(dacl, 0, &mut ace) } == 0 {
                return Err(io::Error::last_os_error());
            }
            let ace = ace.cast::<ACCESS_ALLOWED_ACE>();
            // SAFETY: an access-allowed ACE (type 0) has its SID at SidStart.
            let (kind, sid) = unsafe {
                (
                    (*ace).Header.AceType,
                    std::ptr::addr_of_mut!((*ace).SidStart).cast::<core::ffi::c_void>(),
                )
            };
            // SAFETY: two valid SIDs.
            Ok(kind == 0 && unsafe { EqualSid(sid, user.sid()) } != 0)
        })();
        // SAFETY: allocated by GetNamedSecurityInfoW.
        unsafe { LocalFree(sd) };
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn restricted_files_and_directories_are_private() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("d");
        std::fs::create_dir(&dir).unwrap();
        let file = dir.join("f");
        std::fs::write(&file, b"x").unwrap();
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).unwrap();
            assert!(!is_private(&file).unwrap());
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).unwrap();
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        }
        #[cfg(windows)]
        assert!(
            !is_private(&file).unwrap(),
            "a new file inherits its parent's ACL"
        );
        restrict(&dir, true).unwrap();
        restrict(&file, false).unwrap();
        #[cfg(windows)]
        if win_test::is_wine() {
            // Wine 8 maps a DACL onto Unix mode bits and reads back one made
            // from them: the ACL itself can only be checked on Windows.
            eprintln!("NOTE: under Wine: the owner-only ACL was set, but Wine cannot show it");
            return;
        }
        assert!(is_private(&dir).unwrap());
        assert!(is_private(&file).unwrap());
    }

    #[cfg(windows)]
    #[allow(unsafe_code)]
    mod win_test {
        use windows_sys::Win32::System::LibraryLoader::{GetModuleHandleA, GetProcAddress};

        /// Whether we run under Wine (its ntdll exports `wine_get_version`).
        pub fn is_wine() -> bool {
            // SAFETY: NUL-terminated names; ntdll is always loaded.
            unsafe {
                let ntdll = GetModuleHandleA(c"ntdll.dll".as_ptr().cast());
                !ntdll.is_null()
                    && GetProcAddress(ntdll, c"wine_get_version".as_ptr().cast()).is_some()
            }
        }
    }
}
