// Package mxid parses Matrix identifiers: user IDs (@localpart:server_name)
// and server names.
package mxid

import (
	"net"
	"strconv"
	"strings"
)

// ServerName returns the server part of a user ID, and false if userID is
// not of the form @localpart:server (non-empty localpart and server).
func ServerName(userID string) (string, bool) {
	if len(userID) < 4 || userID[0] != '@' || len(userID) > 255 {
		return "", false
	}
	i := strings.IndexByte(userID, ':')
	if i < 2 || i == len(userID)-1 {
		return "", false
	}
	return userID[i+1:], true
}

// ValidServerName reports whether name follows the spec's grammar for
// server names (see SplitServerName).
func ValidServerName(name string) bool {
	_, _, ok := SplitServerName(name)
	return ok
}

// SplitServerName splits a server name into its host (an IPv6 literal
// keeps its brackets) and port ("" if none), and reports whether it follows
// the spec's grammar: a DNS name (letters, digits, '-' and '.'; at most
// 255), an IPv4 address or a bracketed IPv6 address, then optionally ':'
// and a port (1 to 65535).
func SplitServerName(name string) (host, port string, ok bool) {
	host = name
	hasPort := false
	if strings.HasPrefix(name, "[") {
		end := strings.IndexByte(name, ']')
		if end < 0 {
			return "", "", false
		}
		if ip := name[1:end]; net.ParseIP(ip) == nil || !strings.Contains(ip, ":") {
			return "", "", false
		}
		host = name[:end+1]
		if rest := name[end+1:]; rest != "" {
			if rest[0] != ':' {
				return "", "", false
			}
			port, hasPort = rest[1:], true
		}
	} else {
		if i := strings.LastIndexByte(name, ':'); i >= 0 {
			host, port, hasPort = name[:i], name[i+1:], true
		}
		if host == "" || len(host) > 255 {
			return "", "", false
		}
		for i := 0; i < len(host); i++ {
			c := host[i]
			if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.') {
				return "", "", false
			}
		}
	}
	if hasPort {
		if len(port) < 1 || len(port) > 5 || strings.TrimLeft(port, "0123456789") != "" {
			return "", "", false
		}
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return "", "", false
		}
	}
	return host, port, true
}
