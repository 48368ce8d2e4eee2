// tarlist: the reference reading of a tar stream, by Go's archive/tar (what
// Docker extracts with). Reads a tar on stdin; prints one JSON object per
// header Next() returns, then {"end": "..."} with how reading stopped.
// Built by orca-backup's tests with the Go on the machine (Debian's Go 1.19,
// the Go that built Docker 20.10) and compared with orca's own reader.
package main

import (
	"archive/tar"
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"os"
)

type entry struct {
	Name     string `json:"name"`
	Typeflag int    `json:"typeflag"`
	Size     int64  `json:"size"`
	Mode     int64  `json:"mode"`
	Uid      int    `json:"uid"`
	Gid      int    `json:"gid"`
	Mtime    int64  `json:"mtime"`
	Linkname string `json:"linkname"`
	Devmajor int64  `json:"devmajor"`
	Devminor int64  `json:"devminor"`
	Sha256   string `json:"sha256,omitempty"`
	DataErr  string `json:"data_err,omitempty"`
}

func main() {
	out := bufio.NewWriter(os.Stdout)
	defer out.Flush()
	enc := json.NewEncoder(out)
	tr := tar.NewReader(bufio.NewReaderSize(os.Stdin, 1<<20))
	for {
		h, err := tr.Next()
		if err != nil {
			end := err.Error()
			switch {
			case err == io.EOF:
				end = "eof"
			case errors.Is(err, io.ErrUnexpectedEOF):
				end = "unexpected_eof"
			case errors.Is(err, tar.ErrHeader):
				end = "header"
			case errors.Is(err, tar.ErrFieldTooLong):
				end = "field_too_long"
			}
			enc.Encode(map[string]string{"end": end})
			return
		}
		e := entry{
			Name: hex.EncodeToString([]byte(h.Name)), Typeflag: int(h.Typeflag), Size: h.Size,
			Mode: h.Mode, Uid: h.Uid, Gid: h.Gid, Mtime: h.ModTime.Unix(),
			Linkname: hex.EncodeToString([]byte(h.Linkname)), Devmajor: h.Devmajor, Devminor: h.Devminor,
		}
		// The logical content, as extraction reads it (small files only:
		// the corpus has sparse files of 60 GB).
		if h.Size <= 64<<20 {
			sum := sha256.New()
			if _, err := io.Copy(sum, tr); err != nil {
				e.DataErr = err.Error()
			} else {
				e.Sha256 = hex.EncodeToString(sum.Sum(nil))
			}
		}
		enc.Encode(e)
		if e.DataErr != "" {
			enc.Encode(map[string]string{"end": "data"})
			return
		}
	}
}
