package data

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/ulikunitz/xz"
)

// TexturePackage is the Debian package (GPL-2+) the texture datasets are cut from. Its data
// holds pak4-textures.pk3, a zip of textures/<set>/<name>.jpg.
const TexturePackage = "openarena-081-textures"

// texturePK3 is the archive inside the package that holds the textures.
const texturePK3 = "pak4-textures.pk3"

// Names of the licence files beside a texture dataset, copied from the package's
// /usr/share/doc: the images are derived from GPL-2+ textures.
const (
	TextureLicenseFile = "LICENSE-textures.txt"
	TextureCreditsFile = "CREDITS-textures.txt"
)

// TextureFiles is what the builders read, unpacked from the package into a cache folder.
type TextureFiles struct {
	Package, Version string
	PK3              string // path of pak4-textures.pk3
	Copyright        string // path of the package's copyright file
	Credits          string // path of its CREDITS file; "" when the package has none
}

// Source names the package and version, as the dataset marker records it.
func (t TextureFiles) Source() string { return t.Package + " " + t.Version }

// DefaultTextureCache is $XDG_CACHE_HOME/wkd, else ~/.cache/wkd.
func DefaultTextureCache() string {
	if d := os.Getenv("XDG_CACHE_HOME"); d != "" {
		return filepath.Join(d, "wkd")
	}
	if home, err := os.UserHomeDir(); err == nil {
		return filepath.Join(home, ".cache", "wkd")
	}
	return filepath.Join(os.TempDir(), "wkd-cache")
}

// CachedTexturePackage returns the openarena-081-textures_*.deb in cache (the last by name when
// there are several), or "".
func CachedTexturePackage(cache string) string {
	found, _ := filepath.Glob(filepath.Join(cache, TexturePackage+"_*.deb"))
	if len(found) == 0 {
		return ""
	}
	sort.Strings(found)
	return found[len(found)-1]
}

// FetchTexturePackage returns the .deb in cache, downloading it first with
// `apt-get download` run in cache (no root needed) when it is not there.
func FetchTexturePackage(cache string) (string, error) {
	if deb := CachedTexturePackage(cache); deb != "" {
		return deb, nil
	}
	help := fmt.Sprintf("download it on a Debian/Ubuntu machine with `apt-get download %s` and pass the file with --textures", TexturePackage)
	if err := os.MkdirAll(cache, 0o755); err != nil {
		return "", fmt.Errorf("%w: create --cache %s: %v", ErrNoTexturePkg, cache, err)
	}
	apt, err := exec.LookPath("apt-get")
	if err != nil {
		return "", fmt.Errorf("%w: %s is not in --cache %s and apt-get is not installed; %s", ErrNoTexturePkg, TexturePackage, cache, help)
	}
	cmd := exec.Command(apt, "download", TexturePackage)
	cmd.Dir = cache
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(out.String())
		if len(msg) > 500 {
			msg = "..." + msg[len(msg)-500:]
		}
		return "", fmt.Errorf("%w: `apt-get download %s` in %s failed (%v: %s); %s", ErrNoTexturePkg, TexturePackage, cache, err, msg, help)
	}
	if deb := CachedTexturePackage(cache); deb != "" {
		return deb, nil
	}
	return "", fmt.Errorf("%w: `apt-get download %s` in %s left no %s_*.deb; %s", ErrNoTexturePkg, TexturePackage, cache, TexturePackage, help)
}

// arReader reads an ar archive as dpkg writes it: "!<arch>\n", then for each member a 60-byte
// header (name 16, mtime 12, uid 6, gid 6, mode 8, size 10, "`\n") and the data, padded to an
// even length.
type arReader struct {
	r      *bufio.Reader
	remain int64 // unread bytes of the current member
	pad    bool  // the current member is followed by one padding byte
}

func newARReader(r io.Reader) (*arReader, error) {
	a := &arReader{r: bufio.NewReader(r)}
	var magic [8]byte
	if _, err := io.ReadFull(a.r, magic[:]); err != nil || string(magic[:]) != "!<arch>\n" {
		return nil, errors.New("not an ar archive (no !<arch> header)")
	}
	return a, nil
}

// next skips what is left of the current member and returns the next member's name and size;
// io.EOF after the last one.
func (a *arReader) next() (string, int64, error) {
	skip := a.remain
	if a.pad {
		skip++
	}
	if _, err := io.CopyN(io.Discard, a.r, skip); err != nil {
		return "", 0, io.ErrUnexpectedEOF
	}
	a.remain, a.pad = 0, false
	var h [60]byte
	n, err := io.ReadFull(a.r, h[:])
	if n == 0 && err == io.EOF {
		return "", 0, io.EOF
	}
	if err != nil {
		return "", 0, io.ErrUnexpectedEOF
	}
	if string(h[58:60]) != "`\n" {
		return "", 0, errors.New("bad ar member header")
	}
	name := strings.TrimRight(strings.TrimSpace(string(h[0:16])), "/")
	size, err := strconv.ParseInt(strings.TrimSpace(string(h[48:58])), 10, 64)
	if err != nil || size < 0 {
		return "", 0, fmt.Errorf("bad size %q in the ar header of %q", h[48:58], name)
	}
	a.remain, a.pad = size, size%2 == 1
	return name, size, nil
}

func (a *arReader) Read(p []byte) (int, error) {
	if a.remain == 0 {
		return 0, io.EOF
	}
	if int64(len(p)) > a.remain {
		p = p[:a.remain]
	}
	n, err := a.r.Read(p)
	a.remain -= int64(n)
	if err == io.EOF {
		err = io.ErrUnexpectedEOF // the header promised more
	}
	return n, err
}

// debMember opens the deb at path and returns a tar reader over its member named prefix + a
// compression suffix (.xz, .gz or none), and a function closing the file.
func debMember(deb, prefix string) (*tar.Reader, func(), error) {
	f, err := os.Open(deb)
	if err != nil {
		return nil, nil, fmt.Errorf("%w: %v", ErrNoTexturePkg, err)
	}
	fail := func(format string, a ...any) (*tar.Reader, func(), error) {
		f.Close()
		return nil, nil, fmt.Errorf("%w: %s: %s", ErrBadArchive, deb, fmt.Sprintf(format, a...))
	}
	ar, err := newARReader(f)
	if err != nil {
		return fail("%v", err)
	}
	for {
		name, _, err := ar.next()
		if err == io.EOF {
			return fail("no %s.* member; is it a Debian package?", prefix)
		}
		if err != nil {
			return fail("%v", err)
		}
		if !strings.HasPrefix(name, prefix) {
			continue
		}
		var r io.Reader
		switch strings.TrimPrefix(name, prefix) {
		case ".xz":
			if r, err = xz.NewReader(ar); err != nil {
				return fail("%s: %v", name, err)
			}
		case ".gz":
			if r, err = gzip.NewReader(ar); err != nil {
				return fail("%s: %v", name, err)
			}
		case "":
			r = ar
		default:
			return fail("%s: compression not supported (want .xz or .gz)", name)
		}
		return tar.NewReader(r), func() { f.Close() }, nil
	}
}

// readDebControl returns the Package and Version fields of the deb's control file.
func readDebControl(deb string) (pkg, version string, err error) {
	tr, closeDeb, err := debMember(deb, "control.tar")
	if err != nil {
		return "", "", err
	}
	defer closeDeb()
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return "", "", fmt.Errorf("%w: %s: control.tar has no control file", ErrBadArchive, deb)
		}
		if err != nil {
			return "", "", fmt.Errorf("%w: %s: control.tar: %v", ErrBadArchive, deb, err)
		}
		if path.Clean(h.Name) != "control" {
			continue
		}
		raw, err := io.ReadAll(io.LimitReader(tr, 1<<20))
		if err != nil {
			return "", "", fmt.Errorf("%w: %s: control: %v", ErrBadArchive, deb, err)
		}
		for _, line := range strings.Split(string(raw), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok {
				switch k {
				case "Package":
					pkg = strings.TrimSpace(v)
				case "Version":
					version = strings.TrimSpace(v)
				}
			}
		}
		if pkg != TexturePackage {
			return "", "", fmt.Errorf("%w: %s is package %q, want %s", ErrNoTexturePkg, deb, pkg, TexturePackage)
		}
		if version == "" || strings.ContainsAny(version, "/\\") || strings.Contains(version, "..") {
			return "", "", fmt.Errorf("%w: %s: bad Version %q in control", ErrBadArchive, deb, version)
		}
		return pkg, version, nil
	}
}

// unpackStamp records what UnpackTextures extracted, so a later run can check the files by size
// instead of decompressing the package again.
type unpackStamp struct {
	DebSize int64            `json:"deb_size"`
	Files   map[string]int64 `json:"files"` // base name -> size
}

const unpackStampFile = "unpacked.json"

// UnpackTextures extracts the .pk3 and the licence files of the deb into
// cache/<package>_<version>/, or reuses them when a previous run left them there with the sizes
// it recorded. Decompressing the package takes tens of seconds, and note (when not nil) is told
// before; reading the cache takes no time.
func UnpackTextures(deb, cache string, note func(msg string)) (TextureFiles, error) {
	pkg, version, err := readDebControl(deb)
	if err != nil {
		return TextureFiles{}, err
	}
	st, err := os.Stat(deb)
	if err != nil {
		return TextureFiles{}, fmt.Errorf("%w: %v", ErrNoTexturePkg, err)
	}
	dir := filepath.Join(cache, pkg+"_"+version)
	tf := TextureFiles{Package: pkg, Version: version, PK3: filepath.Join(dir, texturePK3), Copyright: filepath.Join(dir, "copyright")}
	if stamp, ok := readUnpackStamp(dir); ok && stamp.DebSize == st.Size() {
		if _, ok := stamp.Files["CREDITS"]; ok {
			tf.Credits = filepath.Join(dir, "CREDITS")
		}
		return tf, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return tf, fmt.Errorf("data: create the texture cache: %w", err)
	}
	if note != nil {
		note(fmt.Sprintf("unpacking %s into %s (once)", filepath.Base(deb), dir))
	}
	tr, closeDeb, err := debMember(deb, "data.tar")
	if err != nil {
		return tf, err
	}
	defer closeDeb()
	stamp := unpackStamp{DebSize: st.Size(), Files: map[string]int64{}}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return tf, fmt.Errorf("%w: %s: data.tar: %v", ErrBadArchive, deb, err)
		}
		name := path.Clean(strings.TrimPrefix(h.Name, "./"))
		var base string
		switch {
		case h.Typeflag != tar.TypeReg:
			continue
		case path.Base(name) == texturePK3:
			base = texturePK3
		case strings.HasPrefix(name, "usr/share/doc/") && (path.Base(name) == "copyright" || path.Base(name) == "CREDITS"):
			base = path.Base(name)
		default:
			continue
		}
		if err := writeAtomically(filepath.Join(dir, base), io.LimitReader(tr, h.Size), h.Size); err != nil {
			return tf, fmt.Errorf("%w: %s: %s: %v", ErrBadArchive, deb, name, err)
		}
		stamp.Files[base] = h.Size
	}
	if _, ok := stamp.Files[texturePK3]; !ok {
		return tf, fmt.Errorf("%w: %s holds no %s", ErrBadArchive, deb, texturePK3)
	}
	if _, ok := stamp.Files["copyright"]; !ok {
		return tf, fmt.Errorf("%w: %s holds no usr/share/doc/.../copyright", ErrBadArchive, deb)
	}
	if _, ok := stamp.Files["CREDITS"]; ok {
		tf.Credits = filepath.Join(dir, "CREDITS")
	}
	raw, _ := json.MarshalIndent(stamp, "", "  ")
	if err := writeAtomically(filepath.Join(dir, unpackStampFile), bytes.NewReader(raw), int64(len(raw))); err != nil {
		return tf, fmt.Errorf("data: %w", err)
	}
	return tf, nil
}

// readUnpackStamp reads dir's stamp and reports whether every file it lists has its size.
func readUnpackStamp(dir string) (unpackStamp, bool) {
	var s unpackStamp
	raw, err := os.ReadFile(filepath.Join(dir, unpackStampFile))
	if err != nil || json.Unmarshal(raw, &s) != nil || s.Files[texturePK3] == 0 {
		return s, false
	}
	for name, size := range s.Files {
		if st, err := os.Stat(filepath.Join(dir, name)); err != nil || st.Size() != size {
			return s, false
		}
	}
	return s, true
}

// writeAtomically writes size bytes from r to a temporary file renamed to dst, so dst is never
// a partial file.
func writeAtomically(dst string, r io.Reader, size int64) error {
	tmp := dst + ".tmp-" + randomSuffix()
	f, err := os.Create(tmp)
	if err != nil {
		return err
	}
	defer os.Remove(tmp) // no-op after the rename
	n, err := io.Copy(f, r)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil && n != size {
		err = io.ErrUnexpectedEOF
	}
	if err != nil {
		return err
	}
	return os.Rename(tmp, dst)
}
