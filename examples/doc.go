// Package examples holds the site files that ship with vigil (the seed's
// WWW + Telnet site first) and tests that every one of them loads and
// validates. It has no code of its own.
package examples
