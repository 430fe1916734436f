from realtime.cli.main import console_main

console_main()
