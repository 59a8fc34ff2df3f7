from pixquery.cli.main import main

main()
