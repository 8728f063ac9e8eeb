package data

import "errors"

// Errors returned by this package. Each is wrapped with the offending file or folder; test with
// errors.Is.
var (
	ErrBadConfig     = errors.New("data: invalid config")
	ErrMissingFolder = errors.New("data: folder not found")
	ErrEmptyFolder   = errors.New("data: no images in folder")
	ErrCorruptImage  = errors.New("data: corrupt or truncated image")
	ErrBadSize       = errors.New("data: wrong image size")
	ErrSizeMismatch  = errors.New("data: image size mismatch")
	ErrIDXUnreadable = errors.New("data: cannot read IDX file")
	ErrBadIDX        = errors.New("data: malformed IDX file")
	ErrDatasetExists = errors.New("data: output folder holds another dataset")
	ErrLoaderClosed  = errors.New("data: loader closed")
	// The texture builders'.
	ErrBadArchive     = errors.New("data: corrupt or truncated archive")
	ErrNoTexturePkg   = errors.New("data: texture package not available")
	ErrTooFewTextures = errors.New("data: too few textures")
)
