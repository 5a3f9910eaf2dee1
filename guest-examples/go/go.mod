module acidic.example/guests

go 1.27

// The SDK is a module of its own (./acidic): a step in another module
// requires it the same way, with a replace naming this folder.
require acidic.example/acidic v0.0.0

replace acidic.example/acidic => ./acidic
