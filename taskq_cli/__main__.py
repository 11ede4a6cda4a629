from taskq_cli.cli.app import main

main()
