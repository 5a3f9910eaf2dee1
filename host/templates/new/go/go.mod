module {{name}}

go 1.27

// The SDK, from the acidic checkout.
require acidic.example/acidic v0.0.0

replace acidic.example/acidic => {{acidic_home}}/guest-examples/go/acidic
