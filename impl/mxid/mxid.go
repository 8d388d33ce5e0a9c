// Package mxid parses Matrix user IDs (@localpart:server_name).
package mxid

import "strings"

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
