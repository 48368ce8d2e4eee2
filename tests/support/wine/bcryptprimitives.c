/* A stand-in for Windows' bcryptprimitives.dll, which Wine 8.0 lacks: Rust >= 1.78
   binaries import ProcessPrng from it (rust-lang/rust#121337). It fills the
   buffer with advapi32's RtlGenRandom (SystemFunction036), as Windows does.
   Built and installed into the Wine prefix by scripts/wine-prefix.sh. */
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len);
BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk; len -= chunk;
    }
    return TRUE;
}
