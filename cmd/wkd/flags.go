package main

import (
	"fmt"
	"os"

	"github.com/spf13/pflag"
)

// funcFlag is a flag set by a function, shown in help with the type name typ.
type funcFlag struct {
	typ string
	set func(string) error
	get func() string // the value help shows as the default; nil shows none
}

func (f funcFlag) String() string {
	if f.get == nil {
		return ""
	}
	return f.get()
}
func (f funcFlag) Set(s string) error { return f.set(s) }
func (f funcFlag) Type() string       { return f.typ }

// aliasValue is a second name of a flag.
type aliasValue struct{ target pflag.Value }

func (a aliasValue) String() string {
	if a.target == nil {
		return ""
	}
	return a.target.String()
}
func (a aliasValue) Set(s string) error { return a.target.Set(s) }
func (a aliasValue) Type() string       { return a.target.Type() }
func (a aliasValue) IsBoolFlag() bool {
	b, ok := a.target.(interface{ IsBoolFlag() bool })
	return ok && b.IsBoolFlag()
}

// renamedValue is an earlier name of a flag: it sets the flag as its new name would (which
// counts as given), with a note on stderr.
type renamedValue struct {
	aliasValue
	fs       *pflag.FlagSet
	old, now string
}

func (r renamedValue) Set(s string) error {
	fmt.Fprintf(os.Stderr, "note: --%s is now --%s\n", r.old, r.now)
	return r.fs.Set(r.now, s)
}

// renamed keeps old, an earlier name of the flag now, working and out of the help.
func renamed(fs *pflag.FlagSet, old, now string) {
	target := fs.Lookup(now)
	if target == nil {
		panic("wkd: renamed flag of a missing flag: " + now)
	}
	f := fs.VarPF(renamedValue{aliasValue{target.Value}, fs, old, now}, old, "", "earlier name of --"+now)
	f.NoOptDefVal = target.NoOptDefVal
	f.Hidden = true
}
