// Package ignore decides which paths of a synced folder lockstep leaves
// alone, from gitignore-style patterns written relative to the folder root.
//
// The patterns follow gitignore(5):
//
//   - a blank pattern, or one starting with '#', is a no-op, so a
//     .gitignore can be pasted as it is; "\#" starts a literal '#';
//   - trailing spaces are dropped unless escaped with '\';
//   - '!' negates: a path matched by a later negated pattern is kept
//     ("\!" starts a literal '!');
//   - a trailing '/' matches directories only (and so everything in them);
//   - a pattern with a '/' at its start or in its middle is anchored to the
//     folder root; one without is matched against the last component at
//     any depth ("*.swp" ignores "a/b/x.swp");
//   - '*' matches any run of characters except '/', '?' one character
//     except '/', "[...]" one character from a class (ranges, "[!...]" or
//     "[^...]" negation, POSIX classes like "[[:digit:]]"), '\' escapes the
//     next character; '?' and classes match one UTF-8 character, where git
//     matches one byte;
//   - "**" (or more stars) as a whole component matches any number of components: a
//     leading "**/" matches at any depth, "/**/" matches zero or more
//     directories, and a trailing "/**" matches everything inside (but not
//     the directory itself); elsewhere "**" is a plain '*'.
//
// The last pattern that matches a path decides. As in git, a path inside
// an ignored directory is ignored whatever later patterns say: lockstep
// never descends into an ignored directory, so it could not see the path
// anyway, and Match agrees with what a walk would do.
//
// Invariants: every path with a component beginning with ".lockstep"
// (vfs.TempPrefix, lockstep's own temporary and staging names) is ignored,
// whatever the patterns say; the folder root itself is never ignored; a
// Matcher is immutable after New and safe for concurrent use.
package ignore
