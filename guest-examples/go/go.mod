module acidic.example/guests

go 1.27
