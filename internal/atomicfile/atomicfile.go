// Package atomicfile writes files so that a reader sees either the old content or the new,
// never half of it, and a crash leaves the old file in place.
package atomicfile

import (
	"os"
	"path/filepath"
)

// WriteFile writes data to a new file beside name with the given mode, syncs it, then renames
// it over name: name has its mode from the start and is never seen half written.
func WriteFile(name string, data []byte, mode os.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(name), "."+filepath.Base(name)+".*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // a no-op once renamed
	if err := tmp.Chmod(mode); err != nil {
		tmp.Close()
		return err
	}
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), name)
}
