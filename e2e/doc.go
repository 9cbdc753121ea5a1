// Package e2e tests lockstep from the outside: it builds bin/lockstep once,
// runs real daemons on 127.0.0.1 in temporary directories, and drives them
// only through the command line, configuration files and the status JSON —
// the same surface a sysadmin and their scripts have.
package e2e
