from trm.cli import main

main()
