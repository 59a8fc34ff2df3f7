from pixquery.cli import main

main()
