//! One gzip member, decompressed in one libdeflate call, with the number of
//! input bytes it really used: the `OB` length orca's members carry must be
//! exactly the member, or bytes could hide between its trailer and the next
//! member (libdeflate's plain call ignores what follows a member).

use libdeflate_sys as sys;

/// A libdeflate decompressor.
pub struct MemberDecoder {
    d: std::ptr::NonNull<sys::libdeflate_decompressor>,
}

// SAFETY: a libdeflate decompressor has no thread affinity; it is used by one
// thread at a time (`&mut self`).
#[allow(unsafe_code)]
unsafe impl Send for MemberDecoder {}

impl MemberDecoder {
    /// A new decompressor.
    #[allow(unsafe_code)]
    pub fn new() -> MemberDecoder {
        // SAFETY: plain allocation; null only when out of memory.
        let p = unsafe { sys::libdeflate_alloc_decompressor() };
        MemberDecoder {
            d: std::ptr::NonNull::new(p).expect("libdeflate: out of memory"),
        }
    }

    /// Decompress the gzip member at the start of `input` into `out`: `(input
    /// bytes used, output bytes)`, or `None` for damaged data (or output
    /// larger than `out`).
    #[allow(unsafe_code)]
    pub fn gzip(&mut self, input: &[u8], out: &mut [u8]) -> Option<(usize, usize)> {
        let mut used = 0usize;
        let mut produced = 0usize;
        // SAFETY: the pointers and lengths describe live slices; libdeflate
        // writes at most `out.len()` bytes and the two counts.
        let rc = unsafe {
            sys::libdeflate_gzip_decompress_ex(
                self.d.as_ptr(),
                input.as_ptr().cast(),
                input.len(),
                out.as_mut_ptr().cast(),
                out.len(),
                &mut used,
                &mut produced,
            )
        };
        (rc == sys::libdeflate_result_LIBDEFLATE_SUCCESS).then_some((used, produced))
    }
}

impl Default for MemberDecoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for MemberDecoder {
    #[allow(unsafe_code)]
    fn drop(&mut self) {
        // SAFETY: allocated in new(), freed once.
        unsafe { sys::libdeflate_free_decompressor(self.d.as_ptr()) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn gz(data: &[u8]) -> Vec<u8> {
        let mut c = libdeflater::Compressor::new(libdeflater::CompressionLvl::default());
        let mut out = vec![0u8; c.gzip_compress_bound(data.len())];
        let n = c.gzip_compress(data, &mut out).unwrap();
        out.truncate(n);
        out
    }

    #[test]
    fn reports_the_bytes_a_member_really_uses() {
        let member = gz(b"hello hello hello");
        let mut input = member.clone();
        input.extend_from_slice(&gz(b"hidden"));
        let mut out = vec![0u8; 64];
        let mut d = MemberDecoder::new();
        assert_eq!(d.gzip(&input, &mut out), Some((member.len(), 17)));
        assert_eq!(&out[..17], b"hello hello hello");
        assert!(d.gzip(&input[..member.len() - 1], &mut out).is_none());
    }
}
