from hub.console import main

main()
