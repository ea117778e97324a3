package config

import (
	"errors"
	"fmt"
	"reflect"

	"github.com/BurntSushi/toml"
)

// Load reads and validates the site file at path. A file that cannot be read
// gives an error wrapping the fs error (errors.Is(err, fs.ErrNotExist)
// works), and so does one that is not a regular file (a FIFO, a device):
// those could hang the read or never end it. A file that is not a valid
// site gives Errors.
func Load(path string) (*Site, error) {
	data, err := readRegular(path, maxSize+1) // one byte more, to see it is too large
	if err != nil {
		return nil, fmt.Errorf("read site file: %w", err)
	}
	return Parse(path, data)
}

// Parse validates data as a site file; filename is used in messages. On
// failure the error is Errors: the first problems in file order (see
// Errors.Total for how many there are). Text over the size or nesting
// limits is refused before it is decoded.
func Parse(filename string, data []byte) (*Site, error) {
	text := string(data)
	if e := checkLimits(filename, text); e != nil {
		return nil, Errors{*e}
	}
	var raw map[string]any
	if _, err := toml.Decode(text, &raw); err != nil {
		var pe toml.ParseError
		e := Error{File: filename, Line: 1, Col: 1, Msg: err.Error()}
		if errors.As(err, &pe) {
			e.Line, e.Col = max(pe.Position.Line, 1), max(pe.Position.Col, 1)
			e.Msg = "TOML syntax: " + pe.Message
		}
		return nil, Errors{e}
	}
	d := &decoder{file: filename, pos: scanPositions(text)}
	s := &Site{}
	s.setDefaults()
	d.decode(reflect.ValueOf(s).Elem(), raw, nil)
	s.File = filename
	v := &validator{decoder: d, raw: raw, s: s}
	v.resolve()
	v.validate()
	if len(d.errs) > 0 {
		d.errs[len(d.errs)-1].more = d.more
		return nil, d.errs
	}
	return s, nil
}
