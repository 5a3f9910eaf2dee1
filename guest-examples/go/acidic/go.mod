module acidic.example/acidic

go 1.27
