// Package confwatch watches a CNI configuration directory and tells its caller which CNI network
// a new pod sandbox gets.
//
// A Watcher loads every .conf, .conflist and .json file in the directory with libcni, validates
// each candidate against the plugin binaries in its bin dirs, and publishes an immutable
// Snapshot: the default network (a pinned name, else the first valid file in lexical order, the
// kubelet's rule), every valid network by name, and every skipped file with the reason it was
// skipped. Run watches the directory, its plugin subdirectories and the bin dirs with fsnotify,
// debounces bursts of events, and rescans; validation results are cached by file content and
// plugin binary identity, so a rescan of an unchanged directory execs no plugin.
package confwatch
