from pixquery.quick import main

main()
