// Package admission bounds how many CNI plugin chains of each kind run at
// once, so that a storm of pod sandbox set-ups reaches the machine's best
// throughput instead of slowing every caller down.
//
// A [Lane] is a FIFO-fair counting limiter: [Lane.Acquire] either admits the
// caller at once or queues it behind earlier callers until a slot frees or the
// caller's context ends. A caller whose context ends while queued gets an error
// wrapping [ErrQueueTimeout] and its context's error, and must run nothing.
//
// A [Set] groups the lanes a network plugin uses: ADD, DEL, CHECK, STATUS and
// GC each have their own lane, so teardowns are never starved by a set-up
// storm. [DefaultLimits] derives the bounds from the CPUs available to the
// process.
//
// The package starts no goroutines. Bounds can be changed at run time with
// [Lane.SetLimit]; [Adaptive] is the controller that sets the ADD lane's bound
// from what its chains spend on CPU and on waiting, and [Lane.Queuing] tells
// its caller when to look at a standing queue.
package admission
